"""`meters.device_figures` against the meter rule of `gridshare.core.meter_rule` (SPEC §7),
on devices shaped to reach every branch of PERIOD_SQL: bounds hit exactly or interpolated,
a device joining in the period or known from before, silent, reporting only after the
period, never reporting, a meter going down, down statuses, readings received after the
cutoff, and a carried epoch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
import pytest

from gridshare.core import meter_rule as rule
from gridshare.oracle.leaves import DeviceLeaf
from gridshare.oracle.meters import DeviceFigures, device_figures
from gridshare.oracle.periods import ensure_grid
from tests.oracle.conftest import DAY, T0

START, END = T0 + timedelta(days=1), T0 + timedelta(days=2)
INTERVAL = 300
LATE_FROM = END - timedelta(hours=6)


@dataclass(frozen=True)
class Reading:
    time: datetime
    seq: int
    energy: int
    revenue: int
    sessions: int
    status: str = "charging"
    late: bool = False  # received after the cutoff


def series(first: datetime, count: int, step: int, seq0: int = 0) -> list[Reading]:
    return [
        Reading(first + timedelta(seconds=i * step), seq0 + i, 1000 + 37 * i, 500 + 11 * i, i // 5)
        for i in range(count)
    ]


DEVICES: dict[str, list[Reading]] = {
    "on-bounds": series(START - timedelta(hours=1), 80, 1200),  # readings on S and on E
    "between": series(START - timedelta(seconds=7), 300, 293),
    "joins": series(START + timedelta(hours=5, seconds=13), 40, 301),
    "history": series(T0 + timedelta(hours=3), 60, 1799),
    "silent": series(T0 + timedelta(hours=2), 20, 600),
    "after-only": series(END + timedelta(minutes=3), 5, 300),
    "never": [],
    "reset": [  # one reading below the start value, then values below the one before
        *series(START - timedelta(minutes=10), 10, 600),
        Reading(START + timedelta(hours=2), 10, 900, 400, 0),
        *series(START + timedelta(hours=3), 10, 600, seq0=11),
    ],
    "faults": [
        Reading(START + timedelta(seconds=i * 600), i, 10 * i, 3 * i, 0, status)
        for i, status in enumerate(["charging", "fault", "maintenance", "idle", "offline"] * 30)
    ],
    "late-tail": [
        Reading(r.time, r.seq, r.energy, r.revenue, r.sessions, late=r.time > LATE_FROM)
        for r in series(START - timedelta(minutes=1), 300, 300)
    ],
}


def expected(readings: list[Reading], previous_end: dict[str, int] | None) -> dict | None:
    """The meter rule (gridshare.core.meter_rule) for the meter figures, and the leaf's
    counts by hand, for one device."""
    rows = sorted((r for r in readings if not r.late), key=lambda r: (r.time, r.seq))
    points = [rule.Reading(r.time, r.seq, r.energy, r.revenue, r.sessions) for r in rows]
    previous = rule.Meters(**previous_end) if previous_end else None
    figures = rule.period_figures(rule.Bounds.of(points, START, END), START, END, previous)
    if figures is None:
        return None
    inside = [r for r in rows if START <= r.time < END]
    out: dict = {"readings": len(inside)}
    for name in rule.METER_NAMES:
        first = figures.start.meter(name)
        out[f"start_{name}"], out[f"end_{name}"] = first, figures.end.meter(name)
        out[name] = figures.end.meter(name) - first
        out[f"below_{name}"] = any(getattr(r, name) < first for r in inside)
    out["adjust_energy"] = figures.adjustment_energy
    out["adjust_revenue"] = figures.adjustment_revenue
    out["first_seq"] = figures.first_seq
    out["last_seq"] = figures.last_seq
    up = sum(1 for r in inside if r.status not in ("fault", "maintenance"))
    out["uptime"] = min(up * INTERVAL, DAY)
    return out


def as_expected(f: DeviceFigures) -> dict:
    return {
        "readings": f.readings,
        "energy": f.energy_wh,
        "revenue": f.revenue_minor,
        "sessions": f.sessions,
        "start_energy": f.start_energy_wh,
        "end_energy": f.end_energy_wh,
        "start_revenue": f.start_revenue_minor,
        "end_revenue": f.end_revenue_minor,
        "start_sessions": f.start_sessions,
        "end_sessions": f.end_sessions,
        "adjust_energy": f.adjustment_energy_wh,
        "adjust_revenue": f.adjustment_revenue_minor,
        "first_seq": f.first_seq,
        "last_seq": f.last_seq,
        "uptime": f.uptime_seconds,
    }


@pytest.fixture
def pool(db: psycopg.Connection) -> tuple[str, datetime]:
    """A database-only pool holding DEVICES; returns its name and the data cutoff."""
    tag = uuid.uuid4().hex[:8]
    name = f"meters-{tag}"
    db.execute(
        "INSERT INTO pools (name, pool_id, device_type, share_bps) VALUES (%s, %s, %s, 5000)",
        (name, "0x" + tag * 8, "charging_pile"),
    )
    cutoff = db.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    for device, readings in DEVICES.items():
        device_id = f"cp-{name}-{device}"
        db.execute(
            "INSERT INTO devices (device_id, type, pool, address) VALUES (%s, %s, %s, %s)",
            (device_id, "charging_pile", name, "0x" + "11" * 20),
        )
        for r in readings:
            db.execute(
                """INSERT INTO telemetry (time, device_id, seq, status, energy_wh_total,
                       revenue_minor_total, sessions_total, received_at, signed_bytes, sig)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '', '')""",
                (
                    r.time,
                    device_id,
                    r.seq,
                    r.status,
                    r.energy,
                    r.revenue,
                    r.sessions,
                    cutoff + timedelta(seconds=1) if r.late else cutoff - timedelta(seconds=1),
                ),
            )
    return name, cutoff


def test_first_epoch_figures_follow_spec(db: psycopg.Connection, pool: tuple[str, datetime]):
    name, cutoff = pool
    figures = device_figures(db, name, 1, START, END, cutoff, None, INTERVAL, {})
    got = {f.device_id.removeprefix(f"cp-{name}-"): f for f in figures}
    want = {d: e for d, rs in DEVICES.items() if (e := expected(rs, None)) is not None}
    assert sorted(got) == sorted(want)  # "after-only" and "never" have no leaf
    for device, e in want.items():
        f = got[device]
        resets = e.pop("below_energy") + e.pop("below_revenue")
        e.pop("below_sessions")
        assert as_expected(f) == e, device
        assert f.meter_resets == resets, device
        assert f.late_readings == 0
    assert got["reset"].meter_resets == 2 and got["reset"].energy_wh >= 0
    assert got["faults"].uptime_seconds < got["faults"].readings * INTERVAL
    assert got["late-tail"].readings < 288


def test_carried_epoch_starts_from_the_used_end_values(
    db: psycopg.Connection, pool: tuple[str, datetime]
):
    name, cutoff = pool
    grid = ensure_grid(db, name, DAY)
    assert grid is not None and grid.bounds(2) == (START, END)
    start1, end1 = grid.bounds(1)
    first = device_figures(db, name, 1, start1, end1, cutoff, None, INTERVAL, {})
    used = {
        f.device_id.removeprefix(f"cp-{name}-"): {
            "energy": f.end_energy_wh,
            "revenue": f.end_revenue_minor,
            "sessions": f.end_sessions,
        }
        for f in first
    }
    previous = {
        f.device_id: DeviceLeaf(
            name,
            1,
            f.device_id,
            *([0] * 10),
            f.end_energy_wh,
            f.end_revenue_minor,
            f.end_sessions,
        )
        for f in first
    }
    second = device_figures(db, name, 2, START, END, cutoff, cutoff, INTERVAL, previous)
    got = {f.device_id.removeprefix(f"cp-{name}-"): f for f in second}
    assert sorted(got) == sorted(d for d in DEVICES if expected(DEVICES[d], None))
    assert {"on-bounds", "history", "silent", "reset"} <= set(used)  # carried into epoch 2
    for device, f in got.items():
        e = expected(DEVICES[device], used.get(device))
        assert e is not None
        for key in ("below_energy", "below_revenue", "below_sessions"):
            e.pop(key)
        assert as_expected(f) == e, device
