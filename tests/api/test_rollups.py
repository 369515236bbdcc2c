"""The hourly rollup stays right when readings arrive late, on every flavor: the readings
of a gap arrive ten days after their device time (a device's offline queue, a backfill),
and after the rollup's refresh job (a continuous aggregate on TimescaleDB's full edition; a
view elsewhere) the aggregate-backed buckets equal those computed from the raw rows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from gridshare.api.readings import Bucket, BucketQuery, HourlyReadings, RawReadings, bucketed
from gridshare.core import db
from gridshare.core.settings import Settings

DEVICE = "pv-rollup01"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
GAP = range(12, 24)  # readings every 10 minutes; these two hours arrive late


def test_late_readings_reach_the_hourly_rollup(
    stack_settings: Settings, conn: psycopg.Connection, client: TestClient
) -> None:
    _device(conn)
    _insert(conn, [k for k in range(37) if k not in GAP])
    refreshed = _run_refresh_job(conn)
    _insert(conn, list(GAP))
    if refreshed:
        stale = _buckets(stack_settings, HourlyReadings())
        assert stale != _buckets(stack_settings, RawReadings()), "late hours were materialized"
        _run_refresh_job(conn)
    raw = _buckets(stack_settings, RawReadings())
    assert [b.energy_wh for b in raw] == [6000] * 6
    assert [b.stats.readings if b.stats else 0 for b in raw] == [6] * 6
    assert _buckets(stack_settings, HourlyReadings()) == raw
    body = client.get(
        f"/v1/devices/{DEVICE}/income",
        params={"start": START.isoformat(), "end": (START + 6 * HOUR).isoformat(), "bucket": "1h"},
    ).json()
    assert [p["revenue_minor"] for p in body["points"]] == [b.revenue_minor for b in raw]


def test_retention_keeps_the_materialized_hours(
    stack_settings: Settings, conn: psycopg.Connection, full_timescaledb: None
) -> None:
    """Raw rows, the signed evidence auditors re-verify, are kept seven years (a regulated
    issuer's record keeping), and their hourly figures stay after that: dropping raw chunks
    (what the retention job does) invalidates their range, and a refresh over that range
    would empty those hours, so the refresh window must end short of the retention
    horizon."""
    drop_after = _interval(conn, _job_config(conn, "policy_retention")["drop_after"])
    start_offset = _job_config(conn, "policy_refresh_continuous_aggregate")["start_offset"]
    assert drop_after >= timedelta(days=2557), "raw evidence kept less than seven years"
    assert start_offset is not None, "an unbounded refresh window covers dropped chunks"
    assert _interval(conn, start_offset) < drop_after

    _device(conn)
    old = START - drop_after - timedelta(days=15)  # past the retention horizon
    _insert(conn, range(12), at=old)
    conn.execute(
        "CALL refresh_continuous_aggregate('telemetry_hourly', %s::timestamptz, %s::timestamptz)",
        (old, old + 2 * HOUR),
    )
    before = _hours(conn, old)
    assert [r[1] for r in before] == [6, 6]
    # Only this test's chunks (the retention job would drop every chunk past its horizon).
    conn.execute("SELECT drop_chunks('telemetry', older_than => %s::timestamptz)", (old + 2 * DAY,))
    assert not conn.execute(
        "SELECT 1 FROM telemetry WHERE device_id = %s AND time < %s", (DEVICE, START)
    ).fetchone(), "no raw chunk was dropped"
    _run_refresh_job(conn)
    assert _hours(conn, old) == before


def _job_config(conn: psycopg.Connection, proc_name: str) -> dict:
    row = conn.execute(
        "SELECT config FROM timescaledb_information.jobs WHERE proc_name = %s", (proc_name,)
    ).fetchone()
    assert row, f"no {proc_name} job"
    return row[0]


def _interval(conn: psycopg.Connection, text: str) -> timedelta:
    return conn.execute("SELECT %s::interval", (text,)).fetchone()[0]


def _hours(conn: psycopg.Connection, start: datetime) -> list[tuple]:
    return conn.execute(
        "SELECT bucket, readings, energy_wh_first, energy_wh_last FROM telemetry_hourly"
        " WHERE device_id = %s AND bucket >= %s AND bucket < %s ORDER BY bucket",
        (DEVICE, start, start + 2 * HOUR),
    ).fetchall()


def _device(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO pools (name, pool_id, device_type, share_bps) "
        "VALUES ('pv-plant-9301', '0xrollup', 'pv_plant', 7000) ON CONFLICT DO NOTHING"
    )
    conn.execute(
        "INSERT INTO devices (device_id, type, pool, address) "
        "VALUES (%s, 'pv_plant', 'pv-plant-9301', '0x0') ON CONFLICT DO NOTHING",
        (DEVICE,),
    )


def _insert(conn: psycopg.Connection, steps: Iterable[int], at: datetime = START) -> None:
    """One reading per 10 minutes of device time: seq k, meters rising 1,000 Wh per step."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry (time, device_id, seq, status, power_w, energy_wh_total, "
            "revenue_minor_total, signed_bytes, sig) "
            "VALUES (%s, %s, %s, 'generating', 6000, %s, %s, '', '')",
            [(at + k * timedelta(minutes=10), DEVICE, k, 1000 * k, 90 * k) for k in steps],
        )


def _run_refresh_job(conn: psycopg.Connection) -> bool:
    """Run the continuous aggregate's refresh policy now, as the scheduler would; False on
    flavors without one. (TimescaleDB 2.28.3 on PostgreSQL 15.20 reports `cannot drop portal`
    after a job's work is committed: that report is not a failure of the refresh.)"""
    if db.schema_flavor(conn) is not db.Flavor.TIMESCALE:
        return False
    row = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
    ).fetchone()
    assert row, "the hourly aggregate has no refresh policy"
    try:
        conn.execute("CALL run_job(%s)", (row[0],))
    except psycopg.Error as exc:
        if "cannot drop portal" not in str(exc):
            raise
    return True


def _buckets(settings: Settings, store: HourlyReadings | RawReadings) -> list[Bucket]:
    async def read() -> list[Bucket]:
        async with await psycopg.AsyncConnection.connect(settings.db_url) as conn:
            query = BucketQuery(DEVICE, START, START + 6 * HOUR, HOUR)
            return await bucketed(store, conn, query, True)

    return asyncio.run(read())


@pytest.fixture(autouse=True)
def _clean(conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM telemetry WHERE device_id = %s", (DEVICE,))
