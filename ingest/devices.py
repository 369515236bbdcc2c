"""Registered signing addresses, cached in memory and looked up on demand.

The whole table is reloaded every `refresh_seconds` (picking up re-keyed or deactivated
devices); an id not in the cache is looked up at once, in one query per batch, and an id that
is still unknown is not asked about again for `miss_seconds`, so a flood of messages under
made-up ids costs at most one small query per batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import psycopg

DEVICES_SQL = (
    "SELECT d.device_id, d.address, p.currency FROM devices d JOIN pools p ON p.name = d.pool"
)


class DeviceDirectory:
    """device_id -> checksummed signing address of active, registered devices."""

    def __init__(self, refresh_seconds: float = 60.0, miss_seconds: float = 5.0) -> None:
        self.refresh_seconds = refresh_seconds
        self.miss_seconds = miss_seconds
        self._addresses: dict[str, str] = {}
        self._currencies: dict[str, str] = {}
        self._misses: dict[str, float] = {}
        self._loaded_at = float("-inf")

    def address(self, device_id: str) -> str | None:
        return self._addresses.get(device_id)

    def currency(self, device_id: str) -> str | None:
        """The currency of the device's pool (its telemetry must report in it)."""
        return self._currencies.get(device_id)

    def ensure(self, conn: psycopg.Connection, device_ids: Iterable[str]) -> None:
        """Make the cache current for `device_ids` (one query at most)."""
        now = time.monotonic()
        if now - self._loaded_at > self.refresh_seconds:
            rows = conn.execute(DEVICES_SQL + " WHERE d.active").fetchall()
            self._addresses = {r[0]: r[1] for r in rows}
            self._currencies = {r[0]: r[2] for r in rows}
            self._misses.clear()
            self._loaded_at = now
            return
        wanted = [
            d
            for d in set(device_ids)
            if d not in self._addresses
            and now - self._misses.get(d, float("-inf")) > self.miss_seconds
        ]
        if not wanted:
            return
        rows = conn.execute(
            DEVICES_SQL + " WHERE d.active AND d.device_id = ANY(%s)", (wanted,)
        ).fetchall()
        self._addresses.update((r[0], r[1]) for r in rows)
        self._currencies.update((r[0], r[2]) for r in rows)
        for device_id in set(wanted) - {r[0] for r in rows}:
            self._misses[device_id] = now
        if len(self._misses) > 100_000:
            self._misses = {d: t for d, t in self._misses.items() if now - t <= self.miss_seconds}
