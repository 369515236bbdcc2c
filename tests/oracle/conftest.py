"""Oracle fixtures: the session stack with contracts deployed, pools created on-chain and in
the database, and telemetry written straight into the `telemetry` table."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from gridshare.core.chain.deploy import deploy
from gridshare.core.chain.deployment import DeploymentRecord
from gridshare.core.chain.pools import create_pool
from gridshare.core.settings import Settings
from gridshare.oracle.context import OracleContext
from gridshare.oracle.settings import OracleSettings

DAY = 86_400
STEP = 300  # seconds between readings
T0 = datetime(2026, 10, 1, tzinfo=UTC)  # a period boundary (daily periods)
PREFIX = {"charging_pile": "cp", "pv_plant": "pv", "battery_swap": "bs"}
_numbers = itertools.count(100)


@dataclass(frozen=True)
class Pool:
    name: str
    device_type: str
    share_bps: int
    devices: list[str]


@pytest.fixture(scope="session")
def deployed(stack_settings: Settings) -> DeploymentRecord:
    return deploy(stack_settings).record


def oracle_settings(**overrides: object) -> OracleSettings:
    base: dict[str, object] = {
        "metrics_port": 0,
        "receipt_timeout_seconds": 30,
        "cutoff_margin_seconds": 0,
    }
    base.update(overrides)
    return OracleSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
def ctx(stack_settings: Settings, deployed: DeploymentRecord) -> OracleContext:
    return OracleContext.create(stack_settings, oracle_settings())


@pytest.fixture
def db(stack_settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack_settings.db_url, autocommit=True) as connection:
        yield connection


def make_pool(
    settings: Settings,
    conn: psycopg.Connection,
    device_type: str = "charging_pile",
    devices: int = 3,
    share_bps: int = 2_500,
) -> Pool:
    """A pool with a fresh name, on-chain and in the database, with `devices` devices."""
    number = next(_numbers)
    name = f"{device_type.replace('_', '-')}-{number}"
    record = create_pool(settings, name, device_type, share_bps)
    conn.execute(
        "INSERT INTO pools (name, pool_id, device_type, share_bps, token_address)"
        " VALUES (%s, %s, %s, %s, %s)",
        (name, record.pool_id, device_type, share_bps, record.token),
    )
    ids = [f"{PREFIX[device_type]}-t{number}-{i:03d}" for i in range(devices)]
    for device_id in ids:
        conn.execute(
            "INSERT INTO devices (device_id, type, pool, address) VALUES (%s, %s, %s, %s)",
            (device_id, device_type, name, "0x" + "11" * 20),
        )
    return Pool(name, device_type, share_bps, ids)


def insert_readings(
    conn: psycopg.Connection,
    device_id: str,
    start: datetime,
    end: datetime,
    step: int = STEP,
    offset: int = 0,
    energy_rate: int = 100,
    revenue_per_kwh: int = 400,
    first_seq: int | None = None,
) -> None:
    """Readings every `step` s in [start, end) (shifted by `offset` s) with growing meters:
    energy k*rate + a wobble (never decreasing), revenue at `revenue_per_kwh` cents/kWh."""
    base_k = int((start - T0).total_seconds()) // step
    conn.execute(
        """INSERT INTO telemetry (time, device_id, seq, status, power_w, energy_wh_total,
                                  sessions_total, revenue_minor_total)
           SELECT %(t0)s + make_interval(secs => k * %(step)s + %(offset)s), %(dev)s,
                  coalesce(%(seq0)s, k), 'charging', 7000,
                  k * %(rate)s + (30 + 30 * sin(k * 0.7))::bigint,
                  k / 12,
                  (k * %(rate)s + (30 + 30 * sin(k * 0.7))::bigint) * %(tariff)s / 1000
           FROM generate_series(%(k0)s, %(k1)s - 1) AS k""",
        {
            "t0": T0,
            "step": step,
            "offset": offset,
            "dev": device_id,
            "seq0": None if first_seq is None else first_seq,
            "rate": energy_rate,
            "tariff": revenue_per_kwh,
            "k0": base_k,
            "k1": int((end - T0).total_seconds()) // step,
        },
    )


def fill(conn: psycopg.Connection, pool: Pool, days: float, **kwargs: object) -> None:
    """Every device of the pool reports from T0 for `days` days."""
    for i, device_id in enumerate(pool.devices):
        insert_readings(
            conn,
            device_id,
            T0,
            T0 + timedelta(days=days),
            offset=i * 7,
            **kwargs,  # type: ignore[arg-type]
        )
