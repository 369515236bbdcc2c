"""What the bridges keep in the database: charger logins, devices' meter states, evidence.

A state row is written only after the broker acknowledged the reading built from it, in one
transaction with that reading's source evidence (and other chargers' saves: group commit),
so after any crash the bridge resumes from a state that the platform has (or is about to
have, from the broker) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
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
DEFAULT_CURRENCY = "HKD"  # a pool row's default


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
class PoolTerms:
    """What a pool's readings are priced with: minor units per kWh, in its currency."""

    tariff_minor_per_kwh: int | None
    currency: str


@dataclass(frozen=True)
class BridgedDevice:
    device_id: str
    type: DeviceType
    pool: str


class BridgeStore:
    """The bridges' tables over an async connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._terms: dict[str, tuple[float, PoolTerms]] = {}
        self._pending: list[_Save] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: Settings, max_size: int = 8) -> BridgeStore:
        own = settings.for_service("bridge")  # its role writes only the bridges' tables
        return cls(await db.async_pool(own, min_size=1, max_size=max_size, autocommit=True))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
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

    async def terms(self, pool: str) -> PoolTerms:
        """The pool's tariff and currency, re-read at most every 30 s."""
        cached = self._terms.get(pool)
        if cached is not None and time.monotonic() - cached[0] < TARIFF_TTL_SECONDS:
            return cached[1]
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT tariff_minor_per_kwh, currency FROM pools WHERE name = %s", (pool,)
            )
            row = await cur.fetchone()
        terms = PoolTerms(row[0], row[1]) if row else PoolTerms(None, DEFAULT_CURRENCY)
        self._terms[pool] = (time.monotonic(), terms)
        return terms

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
        """Record an acknowledged reading's state and its evidence; returns once committed.

        Saves that arrive while a commit is under way are committed together in the next
        one (group commit): one fsync for many chargers instead of one each."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append(_Save(device_id, state, list(evidence), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_loop())
        self._wake.set()
        await done

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await self._write(batch)
            except Exception as exc:  # each caller gets the failure: its charger retries
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
            else:
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)

    async def _write(self, batch: list[_Save]) -> None:
        """One transaction. A state is never replaced by an older one (a replaced
        connection finishing late)."""
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
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
                [
                    (
                        item.device_id,
                        item.state.last_seq,
                        item.state.last_ts,
                        item.state.status,
                        item.state.energy_mwh_total,
                        item.state.revenue_micro_total,
                        item.state.sessions_total,
                        item.state.last_transaction,
                        Jsonb(item.state.source),
                    )
                    for item in batch
                ],
            )
            evidence = [
                (
                    item.device_id,
                    item.state.last_seq,
                    ordinal,
                    value.ts,
                    value.format,
                    value.measurand,
                    value.signed_data,
                    value.signing_method,
                    value.encoding_method,
                    value.public_key,
                )
                for item in batch
                for ordinal, value in enumerate(item.evidence)
            ]
            if evidence:
                await cur.executemany(
                    "INSERT INTO reading_evidence (device_id, seq, ordinal, ts, format,"
                    " measurand, signed_data, signing_method, encoding_method, public_key)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    evidence,
                )


@dataclass
class _Save:
    device_id: str
    state: MeterState
    evidence: list[Evidence]
    done: asyncio.Future[None]
