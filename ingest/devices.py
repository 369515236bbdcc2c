"""Registered devices (signing address, rated power, pool tariff bound and currency),
cached in memory and looked up on demand.

The whole table is reloaded every `refresh_seconds`, and the ids NOTIFYed on the devices
channel (re-keyed, revoked, added) as the notification arrives (`apply`, from the worker's
listening thread; the lock orders its reloads with this thread's); an id not in the cache is
looked up at once, in one query per batch, and an id that is still unknown is not asked about
again for `miss_seconds`, so a flood of messages under made-up ids costs at most one small
query per batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import NamedTuple

import psycopg

DEVICES = (
    "SELECT d.device_id, d.address, d.rated_power_w, p.max_tariff_minor_per_kwh, p.currency"
    " FROM devices d JOIN pools p ON p.name = d.pool WHERE d.active"
)


class Device(NamedTuple):
    address: str  # checksummed signing address
    rated_power_w: int
    max_tariff_minor_per_kwh: int  # of the device's pool
    currency: str  # of the device's pool


class DeviceDirectory:
    """device_id -> `Device` of active, registered devices."""

    def __init__(self, refresh_seconds: float = 60.0, miss_seconds: float = 5.0) -> None:
        self.refresh_seconds = refresh_seconds
        self.miss_seconds = miss_seconds
        self._devices: dict[str, Device] = {}
        self._misses: dict[str, float] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def address(self, device_id: str) -> str | None:
        device = self._devices.get(device_id)
        return device.address if device else None

    def device(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def ensure(self, conn: psycopg.Connection, device_ids: Iterable[str]) -> None:
        """Make the cache current for `device_ids` (one query at most)."""
        now = time.monotonic()
        if now - self._loaded_at > self.refresh_seconds:
            self._reload_all(conn, now)
            return
        wanted = [
            d
            for d in set(device_ids)
            if d not in self._devices
            and now - self._misses.get(d, float("-inf")) > self.miss_seconds
        ]
        if not wanted:
            return
        with self._lock:
            rows = conn.execute(DEVICES + " AND d.device_id = ANY(%s)", (wanted,)).fetchall()
            self._devices.update((row[0], Device(*row[1:])) for row in rows)
            for device_id in set(wanted) - {r[0] for r in rows}:
                self._misses[device_id] = now
            if len(self._misses) > 100_000:
                self._misses = {
                    d: t for d, t in self._misses.items() if now - t <= self.miss_seconds
                }

    def apply(self, conn: psycopg.Connection, device_ids: Iterable[str]) -> None:
        """Reload these devices now ("*": all of them): a revoked one is forgotten at once."""
        wanted = set(device_ids)
        if "*" in wanted:
            self._reload_all(conn, time.monotonic())
            return
        with self._lock:
            rows = conn.execute(DEVICES + " AND d.device_id = ANY(%s)", (list(wanted),))
            found = {row[0]: Device(*row[1:]) for row in rows.fetchall()}
            for device_id in wanted:
                if device_id in found:
                    self._devices[device_id] = found[device_id]
                    self._misses.pop(device_id, None)
                else:
                    self._devices.pop(device_id, None)

    def _reload_all(self, conn: psycopg.Connection, now: float) -> None:
        with self._lock:
            rows = conn.execute(DEVICES).fetchall()
            self._devices = {row[0]: Device(*row[1:]) for row in rows}
            self._misses.clear()
            self._loaded_at = now
