"""Live device updates: one PostgreSQL LISTEN connection fanned out to every SSE client.

Ingest NOTIFYs channel `gridshare_device` with the ids of the devices each committed batch
touched. The hub gathers ids for a short coalescing window, then reads those devices' states
in one query and puts the updates into every subscriber's queue, so the database work per
batch is the same for one client or ten thousand. A subscriber whose queue is full (a stalled
client) loses its oldest updates rather than holding the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import AsyncConnectionPool

from gridshare.api.metrics import STREAM_CLIENTS, STREAM_EVENTS
from gridshare.api.schemas import DeviceUpdate

CHANNEL = "gridshare_device"
log = logging.getLogger(__name__)

STATE_SQL = """
    SELECT device_id, online, status, last_seen, last_seq, power_w, soc_pct,
           energy_wh_total, revenue_minor_total
    FROM device_state WHERE device_id = ANY(%s)
"""
POOL_SQL = "SELECT device_id, pool FROM devices WHERE device_id = ANY(%s)"


def device_ids(untrusted_payload: str) -> set[str]:
    """Device ids from a notification: a JSON list, an object holding one, or comma text."""
    try:
        value = json.loads(untrusted_payload)
    except ValueError:
        value = untrusted_payload.split(",")
    if isinstance(value, dict):
        value = value.get("device_ids", value.get("devices", []))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return set()
    return {v.strip() for v in value if isinstance(v, str) and 0 < len(v.strip()) <= 64}


@dataclass(eq=False)
class Subscriber:
    pool: str | None = None
    device_id: str | None = None
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))

    def wants(self, pool: str | None, update: DeviceUpdate) -> bool:
        if self.device_id is not None and update.device_id != self.device_id:
            return False
        return self.pool is None or pool == self.pool

    def offer(self, item: str | None) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class StreamHub:
    def __init__(self, db_url: str, pool: AsyncConnectionPool, window: float = 0.25) -> None:
        self.db_url = db_url
        self.pool = pool
        self.window = window
        self.subscribers: set[Subscriber] = set()
        self.pending: set[str] = set()
        self.wake = asyncio.Event()
        self.listening = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.device_pools: dict[str, str] = {}

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._fan_out())]

    async def stop(self) -> None:
        for sub in list(self.subscribers):
            sub.offer(None)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @contextlib.asynccontextmanager
    async def subscribe(
        self, pool: str | None = None, device_id: str | None = None
    ) -> AsyncIterator[Subscriber]:
        sub = Subscriber(pool=pool, device_id=device_id)
        self.subscribers.add(sub)
        STREAM_CLIENTS.set(len(self.subscribers))
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)
            STREAM_CLIENTS.set(len(self.subscribers))

    async def _listen(self) -> None:
        """Hold the one LISTEN connection; reconnect with backoff if it drops."""
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.db_url, autocommit=True, connect_timeout=5
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 0.5
                    async for notify in conn.notifies():
                        self.pending |= device_ids(notify.payload)
                        self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning(
                    "stream listener lost; reconnecting",
                    extra={
                        "fields": {
                            "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        }
                    },
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _fan_out(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(self.window)  # coalesce the batches of this window
            self.wake.clear()
            ids, self.pending = self.pending, set()
            if not ids or not self.subscribers:
                continue
            try:
                await self._publish(sorted(ids))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream fan-out failed", extra={"fields": {"error": str(exc)}})

    async def _publish(self, ids: list[str]) -> None:
        async with self.pool.connection() as conn:
            unknown = [i for i in ids if i not in self.device_pools]
            if unknown:
                cur = await conn.execute(POOL_SQL, (unknown,))
                self.device_pools.update(dict(await cur.fetchall()))
            cur = await conn.execute(STATE_SQL, (ids,))
            rows = await cur.fetchall()
        for row in rows:
            update = DeviceUpdate(
                device_id=row[0],
                online=row[1],
                status=row[2],
                last_seen=row[3],
                last_seq=row[4],
                power_w=row[5],
                soc_pct=row[6],
                energy_wh_total=row[7],
                revenue_minor_total=row[8],
            )
            pool = self.device_pools.get(update.device_id)
            data = update.model_dump_json()
            for sub in list(self.subscribers):
                if sub.wants(pool, update):
                    sub.offer(data)
                    STREAM_EVENTS.inc()
