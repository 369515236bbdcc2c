"""The hourly rollup stays right when readings arrive late, on every flavor: the readings
of a gap arrive ten days after their device time (a device's offline queue, a backfill),
and after the rollup's refresh job (a continuous aggregate on TimescaleDB's full edition; a
view elsewhere) the aggregate-backed buckets equal those computed from the raw rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from gridshare.api.readings import Bucket, HourlyReadings, RawReadings, bucketed
from gridshare.core import db
from gridshare.core.settings import Settings

DEVICE = "pv-rollup01"
HOUR = timedelta(hours=1)
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


def _insert(conn: psycopg.Connection, steps: list[int]) -> None:
    """One reading per 10 minutes of device time: seq k, meters rising 1,000 Wh per step."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry (time, device_id, seq, status, power_w, energy_wh_total, "
            "revenue_minor_total) VALUES (%s, %s, %s, 'generating', 6000, %s, %s)",
            [(START + k * timedelta(minutes=10), DEVICE, k, 1000 * k, 90 * k) for k in steps],
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
            return await bucketed(store, conn, DEVICE, START, START + 6 * HOUR, HOUR, True)

    return asyncio.run(read())


@pytest.fixture(autouse=True)
def _clean(conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM telemetry WHERE device_id = %s", (DEVICE,))
