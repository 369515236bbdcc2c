"""The fleet's schedule: simulated time and the readings it makes due.

Simulated time is `start + speed * wall time elapsed` from when the clock starts. One task pops
due readings from a heap and hands each device's messages to its connection; it pauses while
connected devices hold more than `max_backlog` unsent messages (back-pressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridshare.sim.connection import AWAY, OFFLINE, ONLINE, Connections, Link
from gridshare.sim.stats import FleetStats

READING, RECONNECT = 0, 1
BATCH = 500  # due events handled before yielding to the connections


@dataclass
class SimClock:
    """Simulated time: `start` until `started()`, then `speed` times faster than wall time."""

    start: float
    speed: float
    t0: float = 0.0

    def started(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        if not self.t0:
            return self.start
        return self.start + self.speed * (time.monotonic() - self.t0)


@dataclass
class Scheduler:
    """Generate every reading of `links` as simulated time reaches it."""

    links: Sequence[Link]
    connections: Connections
    clock: SimClock
    stats: FleetStats
    max_backlog: int

    async def run(self, end: float, stop: asyncio.Event) -> None:
        """Until simulated time passes `end` with nothing due before it, or `stop` is set."""
        heap: list[Any] = [(link.device.next_due, READING, id(link), link) for link in self.links]
        heapq.heapify(heap)
        since_check = 0
        while not stop.is_set():
            now = min(self.clock.now(), end)
            handled = 0
            while heap and heap[0][0] <= now and handled < BATCH:
                _, kind, _, link = heapq.heappop(heap)
                handled += 1
                if kind == RECONNECT:
                    if link.state == AWAY:
                        self.connections.reconnect_soon(link)
                    continue
                messages, offline = link.device.reading()
                self.connections.enqueue(link, messages)
                if offline and link.state == ONLINE:
                    self.connections.go_away(link)
                    back = self.clock.now() + offline
                    heapq.heappush(heap, (back, RECONNECT, id(link), link))
                heapq.heappush(heap, (link.device.next_due, READING, id(link), link))
            lag = round(max(0.0, now - heap[0][0]) if heap else 0.0, 1)
            self.stats.lag_seconds = lag
            self.stats.lag_max_seconds = max(self.stats.lag_max_seconds, lag)
            since_check += handled
            if since_check >= 1000:
                since_check = 0
                await self._wait_for_backlog(stop)
            if handled == BATCH:
                await asyncio.sleep(0)
                continue
            if now >= end and (not heap or heap[0][0] > end):
                break
            wait = 0.2 if not heap else (heap[0][0] - self.clock.now()) / self.clock.speed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.001, min(0.2, wait)))
        self.stats.stopped_early = stop.is_set()
        for _, kind, _, link in heap:
            if kind == RECONNECT and link.state == AWAY:
                link.state = OFFLINE

    async def _wait_for_backlog(self, stop: asyncio.Event) -> None:
        """Pause generation while connected devices hold more than `max_backlog` unsent
        messages (devices that cannot publish buffer without limit up to MAX_BUFFER)."""
        while not stop.is_set():
            if self.stats.unfinished() <= self.max_backlog:
                return
            if self.connections.backlog() <= self.max_backlog:
                return
            await asyncio.sleep(0.02)
