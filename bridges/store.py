"""What the bridges keep in the database: charger logins, devices' meter states, evidence.

A state row is written only after the broker acknowledged the reading built from it, in one
transaction with that reading's source evidence, so after any crash the bridge resumes from
a state that the platform has (or is about to have, from the broker) and nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gridshare.bridges.meter import MeterState
from gridshare.core import db
from gridshare.core.payloads import DeviceType
from gridshare.core.settings import Settings

TARIFF_TTL_SECONDS = 30.0  # a changed pool tariff applies within this long


@dataclass(frozen=True)
class Evidence:
    """A value signed by the meter itself (OCMF or the charger's signing method)."""

    ts: datetime
    format: str
    signed_data: str
    measurand: str | None = None
    signing_method: str | None = None
    encoding_method: str | None = None
    public_key: str | None = None


@dataclass(frozen=True)
class BridgedDevice:
    device_id: str
    type: DeviceType
    pool: str


class BridgeStore:
    """The bridges' tables over an async connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._tariffs: dict[str, tuple[float, int | None]] = {}

    @classmethod
    async def open(cls, settings: Settings, max_size: int = 8) -> BridgeStore:
        return cls(await db.async_pool(settings, min_size=1, max_size=max_size, autocommit=True))

    async def close(self) -> None:
        await self.pool.close()

    async def charger(self, charger_id: str) -> tuple[str, str] | None:
        """(device id, password hash) of a provisioned charger."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.device_id, c.password_hash FROM ocpp_chargers c"
                " JOIN devices d USING (device_id) WHERE c.charger_id = %s AND d.active",
                (charger_id,),
            )
            row = await cur.fetchone()
        return (row[0], row[1]) if row else None

    async def device(self, device_id: str) -> BridgedDevice | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT type, pool FROM devices WHERE device_id = %s AND active", (device_id,)
            )
            row = await cur.fetchone()
        return BridgedDevice(device_id, DeviceType(row[0]), row[1]) if row else None

    async def tariff(self, pool: str) -> int | None:
        """The pool's tariff (minor units per kWh), re-read at most every 30 s."""
        cached = self._tariffs.get(pool)
        if cached is not None and time.monotonic() - cached[0] < TARIFF_TTL_SECONDS:
            return cached[1]
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT tariff_minor_per_kwh FROM pools WHERE name = %s", (pool,)
            )
            row = await cur.fetchone()
        value = row[0] if row else None
        self._tariffs[pool] = (time.monotonic(), value)
        return value

    async def state(self, device_id: str) -> MeterState | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT last_seq, last_ts, status, energy_mwh_total, revenue_micro_total,"
                " sessions_total, last_transaction, source FROM bridge_state"
                " WHERE device_id = %s",
                (device_id,),
            )
            row = await cur.fetchone()
        return MeterState(*row) if row else None

    async def save(
        self, device_id: str, state: MeterState, evidence: list[Evidence] | tuple = ()
    ) -> None:
        """Record an acknowledged reading's state and its evidence, atomically. A state is
        never replaced by an older one (a replaced connection finishing late)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO bridge_state (device_id, last_seq, last_ts, status,"
                " energy_mwh_total, revenue_micro_total, sessions_total, last_transaction,"
                " source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (device_id) DO UPDATE SET last_seq = excluded.last_seq,"
                " last_ts = excluded.last_ts, status = excluded.status,"
                " energy_mwh_total = excluded.energy_mwh_total,"
                " revenue_micro_total = excluded.revenue_micro_total,"
                " sessions_total = excluded.sessions_total,"
                " last_transaction = excluded.last_transaction, source = excluded.source,"
                " updated_at = now() WHERE bridge_state.last_seq < excluded.last_seq",
                (
                    device_id,
                    state.last_seq,
                    state.last_ts,
                    state.status,
                    state.energy_mwh_total,
                    state.revenue_micro_total,
                    state.sessions_total,
                    state.last_transaction,
                    Jsonb(state.source),
                ),
            )
            if evidence:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO reading_evidence (device_id, seq, ordinal, ts, format,"
                        " measurand, signed_data, signing_method, encoding_method, public_key)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        [
                            (
                                device_id,
                                state.last_seq,
                                ordinal,
                                item.ts,
                                item.format,
                                item.measurand,
                                item.signed_data,
                                item.signing_method,
                                item.encoding_method,
                                item.public_key,
                            )
                            for ordinal, item in enumerate(evidence)
                        ],
                    )
