"""Test data that goes the real way: signed readings published over MQTT, stored by a
`gridshare ingest` worker. Readings come at irregular times with irregular meter steps, so
bucket bounds fall between readings and interpolation matters."""

from __future__ import annotations

import os
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from gridshare.core import db
from gridshare.core.payloads import format_ts
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key
from tests.ingest.fleet import Device, IngestProcess, Publisher, register, wait_until

DAY0 = datetime(2026, 11, 20, tzinfo=UTC)  # two whole settlement days: DAY0 and DAY0 + 1 d
FIRST = DAY0 - timedelta(hours=2)
LAST = DAY0 + timedelta(days=2, hours=2)


@dataclass(frozen=True)
class Reading:
    time: datetime
    seq: int
    energy_wh: int
    revenue_minor: int


@dataclass(frozen=True)
class Fleet:
    pool: str
    devices: list[Device]
    readings: dict[str, list[Reading]]  # what was published, per device, in time order


def schedule(index: int) -> list[Reading]:
    """About 7-minute steps with jitter; meters grow by random steps, sometimes by zero."""
    rng = random.Random(1000 + index)
    out, t, seq, energy, revenue = [], FIRST + timedelta(seconds=17 * index), 1, 5000, 100
    while t <= LAST:
        out.append(Reading(t, seq, energy, revenue))
        t += timedelta(seconds=rng.randint(240, 600), microseconds=rng.randint(0, 999_999))
        seq += 1
        energy += rng.choice((0, rng.randint(1, 900)))
        revenue += rng.choice((0, 0, rng.randint(1, 250)))
    return out


def ingest_fleet(
    settings: Settings, env: dict[str, str], log_dir: Path, count: int = 3, pool: str = ""
) -> Fleet:
    """`count` devices (in `pool`, or in a new pool) with readings stored by ingest."""
    with db.connect(settings, autocommit=True) as conn:
        if pool:
            devices = register_in(conn, pool, count)
        else:
            devices = register(conn, count)
            pool = conn.execute(
                "SELECT pool FROM devices WHERE device_id = %s", (devices[0].device_id,)
            ).fetchone()[0]
    readings = {d.device_id: schedule(i) for i, d in enumerate(devices)}
    worker = IngestProcess(env, log_dir, "api-tests").start()
    publisher = Publisher(settings)
    try:
        for device in devices:
            for r in readings[device.device_id]:
                payload = device.reading(
                    r.seq,
                    ts=format_ts(r.time),
                    energy_wh_total=r.energy_wh,
                    revenue_minor_total=r.revenue_minor,
                    sessions_total=r.seq // 10,
                    soc_pct=float(r.seq % 100),
                    power_w=float(1000 + r.seq % 7000),
                )
                publisher.publish(device.topic, payload)
            publisher.publish(device.status_topic, b"online", retain=True)
        publisher.flush()
        total = sum(len(v) for v in readings.values())
        with psycopg.connect(settings.db_url, autocommit=True) as conn:
            wait_until(lambda: _stored(conn, devices) >= total, 120, f"{total} readings stored")
    finally:
        publisher.close()
        worker.stop()
    return Fleet(pool, devices, readings)


def register_in(conn: psycopg.Connection, pool: str, count: int) -> list[Device]:
    """Charging piles with fresh keys in an existing pool."""
    tag = secrets.token_hex(4)
    devices = [Device(f"cp-{tag}-{i:05d}", os.urandom(32)) for i in range(count)]
    for device in devices:
        conn.execute(
            "INSERT INTO devices (device_id, type, pool, address) VALUES (%s, %s, %s, %s)",
            (device.device_id, "charging_pile", pool, address_for_key(device.key)),
        )
    return devices


def _stored(conn: psycopg.Connection, devices: list[Device]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM telemetry WHERE device_id = ANY(%s)",
        ([d.device_id for d in devices],),
    ).fetchone()
    return row[0]


def meter_at(readings: list[Reading], t: datetime) -> tuple[int, int]:
    """Independent reference of SPEC §7's rule: (energy, revenue) at t."""
    before = [r for r in readings if r.time <= t]
    after = [r for r in readings if r.time > t]
    if not before:
        return after[0].energy_wh, after[0].revenue_minor
    a = before[-1]
    if a.time == t or not after:
        return a.energy_wh, a.revenue_minor
    b = after[0]
    span = (b.time - a.time) // timedelta(microseconds=1)
    part = (t - a.time) // timedelta(microseconds=1)
    return (
        a.energy_wh + (b.energy_wh - a.energy_wh) * part // span,
        a.revenue_minor + (b.revenue_minor - a.revenue_minor) * part // span,
    )
