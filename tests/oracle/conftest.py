"""Oracle fixtures: the session stack with contracts deployed, pools created on-chain and in
the database with devices registered on-chain under their own keys, and signed telemetry
written straight into the `telemetry` table (as ingest stores it: the signed bytes and the
signature beside the columns)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from eth_utils import keccak

from gridshare.core.chain.deploy import deploy
from gridshare.core.chain.deployment import DeploymentRecord
from gridshare.core.chain.pools import create_pool, register_devices
from gridshare.core.payloads import canonical_bytes, format_ts
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key, sign
from gridshare.oracle.context import OracleContext

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


def oracle_settings(settings: Settings, **overrides: object) -> Settings:
    """`settings` with the oracle tests' values: no metrics server, no cutoff margin."""
    test_values: dict[str, object] = {
        "oracle_metrics_port": 0,
        "oracle_receipt_timeout_seconds": 30,
        "oracle_cutoff_margin_seconds": 0,
    }
    return settings.model_copy(update={**test_values, **overrides})


@pytest.fixture
def ctx(stack_settings: Settings, deployed: DeploymentRecord) -> OracleContext:
    return OracleContext.create(oracle_settings(stack_settings))


@pytest.fixture
def db(stack_settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack_settings.db_url, autocommit=True) as connection:
        yield connection


def device_key(device_id: str, generation: int = 0) -> bytes:
    """A device's test signing key (a new generation after a key rotation)."""
    return keccak(text=f"test-device-key:{device_id}:{generation}")


_keys: dict[str, bytes] = {}  # device id -> its current signing key


def make_pool(
    settings: Settings,
    conn: psycopg.Connection,
    device_type: str = "charging_pile",
    devices: int = 3,
    share_bps: int = 2_500,
) -> Pool:
    """A pool with a fresh name, on-chain and in the database, with `devices` devices, each
    registered on-chain with its own key."""
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
        _keys[device_id] = device_key(device_id)
        conn.execute(
            "INSERT INTO devices (device_id, type, pool, address) VALUES (%s, %s, %s, %s)",
            (device_id, device_type, name, address_for_key(_keys[device_id])),
        )
    register_devices(settings, [(d, address_for_key(_keys[d]), name) for d in ids])
    return Pool(name, device_type, share_bps, ids)


def use_key(device_id: str, key: bytes) -> None:
    """Readings inserted from now on are signed with `key` (after a rotation)."""
    _keys[device_id] = key


@dataclass(frozen=True)
class Row:
    """One reading to store (sessions None for PV)."""

    time: datetime
    seq: int
    energy: int
    revenue: int
    sessions: int | None
    status: str = "charging"


def device_type_of(device_id: str) -> str:
    return {v: k for k, v in PREFIX.items()}[device_id.split("-", 1)[0]]


def signed_row(device_id: str, r: Row, key: bytes | None = None) -> tuple[object, ...]:
    """The telemetry columns of a reading signed by the device, as ingest stores it."""
    kind = device_type_of(device_id)
    fields: dict[str, object] = {
        "v": 1,
        "device_id": device_id,
        "type": kind,
        "seq": r.seq,
        "ts": format_ts(r.time),
        "status": r.status,
        "power_w": 7000,
        "energy_wh_total": r.energy,
        "revenue_minor_total": r.revenue,
        "currency": "HKD",
    }
    if kind != "pv_plant":
        fields["sessions_total"] = r.sessions or 0
    signed = canonical_bytes(fields)
    sig = sign(key or _keys[device_id], signed)
    sessions = None if kind == "pv_plant" else (r.sessions or 0)
    return (
        r.time,
        device_id,
        r.seq,
        r.status,
        7000,
        r.energy,
        sessions,
        r.revenue,
        signed,
        bytes.fromhex(sig[2:]),
    )


def store(conn: psycopg.Connection, device_id: str, rows: Iterable[Row]) -> None:
    """COPY signed readings into telemetry (received now)."""
    with conn.cursor().copy(
        """COPY telemetry (time, device_id, seq, status, power_w, energy_wh_total,
               sessions_total, revenue_minor_total, signed_bytes, sig) FROM STDIN"""
    ) as copy:
        for r in rows:
            copy.write_row(signed_row(device_id, r))


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
    """Signed readings every `step` s in [start, end) (shifted by `offset` s) with growing
    meters: energy k*rate + a wobble (never decreasing), revenue at `revenue_per_kwh`
    cents/kWh; seq k (plus `first_seq` - k0 when given)."""
    base_k = int((start - T0).total_seconds()) // step
    last_k = int((end - T0).total_seconds()) // step
    shift = 0 if first_seq is None else first_seq - base_k
    rows = []
    for k in range(base_k, last_k):
        energy = k * energy_rate + round(30 + 30 * math.sin(k * 0.7))
        rows.append(
            Row(
                T0 + timedelta(seconds=k * step + offset),
                k + shift,
                energy,
                energy * revenue_per_kwh // 1000,
                k // 12,
            )
        )
    store(conn, device_id, rows)


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
