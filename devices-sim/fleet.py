"""The fleet: thousands of simulated devices on one asyncio loop, each on its own MQTT
connection with its own login, client id and last will.

The parts, each behind a small interface: `connection` (each device's connection, outbox and
in-flight publishes, reconnection), `scheduler` (simulated time, due readings,
back-pressure), `checkpoint` (seq and meters carried over between runs) and `stats` (the
counters and `acked.tsv` of a run: what the broker accepted is exactly what the platform must
store). This module runs them: the clock starts once every device has had its first
connection attempt; at the end, or on stop(), the fleet reconnects devices away on a
disconnect fault, drains every outbox, marks each device `offline` and disconnects cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from gridshare.core.settings import Settings
from gridshare.core.stack.process import raise_open_files_limit
from gridshare.gateway.identity import DeviceIdentity
from gridshare.sim.checkpoint import Checkpoint
from gridshare.sim.connection import Connections, Link, LinkOptions
from gridshare.sim.device import SimDevice
from gridshare.sim.faults import FaultPlan
from gridshare.sim.scheduler import Scheduler, SimClock
from gridshare.sim.stats import AckedLog, DeviceCounts, FleetStats, iso, read_acked

__all__ = ["DeviceCounts", "Fleet", "FleetStats", "read_acked"]

log = logging.getLogger(__name__)


class Fleet:
    """Drive `devices` against the broker of `settings`. See the module docstring.

    `run(duration)` blocks (its own event loop) and returns the stats; `stop()` may be called
    from another thread or a signal handler. `progress`, if given, is called about once a
    second with `snapshot()`.
    """

    def __init__(
        self,
        settings: Settings,
        devices: Sequence[DeviceIdentity],
        *,
        seed: int = 0,
        speed: float = 60.0,
        interval: float = 300.0,
        start: datetime | float | None = None,
        faults: FaultPlan | None = None,
        jitter: float = 0.1,
        window: int = 20,
        max_backlog: int = 20_000,
        keepalive: int = 60,
        connect_concurrency: int = 200,
        drain_timeout: float = 60.0,
        resume: bool = True,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if speed <= 0 or interval <= 0:
            raise ValueError("speed and interval must be positive")
        self.settings = settings
        self.identities = list(devices)
        self.seed = seed
        self.interval = interval
        self.faults = faults or FaultPlan()
        self.drain_timeout = drain_timeout
        self.resume = resume
        self.progress = progress
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
        self.run_dir = settings.state_path / "sim" / self.run_id
        self.checkpoint = Checkpoint(settings.state_path / "sim" / "checkpoint.json")
        if resume:
            self.checkpoint.load()
        self.start = self.checkpoint.start_time(start, self.identities)
        resumed_until = self.checkpoint.last_end(self.identities)
        if resumed_until > self.start:
            log.warning(
                "sim start is before where these devices' last run ended: their clocks go back"
                " while seq and meters continue",
                extra={"fields": {"start": iso(self.start), "last_run_end": iso(resumed_until)}},
            )
        self._fault_totals: dict[str, int] = {}
        self.links = [
            Link(
                SimDevice(
                    identity, seed, self.start, interval, self.faults, jitter, self._fault_totals
                )
            )
            for identity in self.identities
        ]
        self.checkpoint.restore(link.device for link in self.links)
        self.stats = FleetStats(
            run_id=self.run_id,
            devices=len(self.links),
            sim_start=iso(self.start),
            speed=speed,
            acked_path=str(self.run_dir / "acked.tsv"),
        )
        self._acked = AckedLog(self.run_dir / "acked.tsv")
        self.connections = Connections(
            settings,
            self.links,
            self.stats,
            self._acked,
            LinkOptions(window, keepalive, connect_concurrency),
        )
        self.clock = SimClock(self.start, speed)
        self.scheduler = Scheduler(
            self.links, self.connections, self.clock, self.stats, max_backlog
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._generating = True
        self._wall0 = 0.0
        self._end = self.start

    @property
    def speed(self) -> float:
        return self.clock.speed

    def run(self, duration: float) -> FleetStats:
        """Run for `duration` simulated seconds (or until stop()); the run's stats."""
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(self.run_async(duration))

    async def run_async(self, duration: float) -> FleetStats:
        raise_open_files_limit()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        self.connections.start()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._acked.open()
        self._wall0 = time.monotonic()
        self._end = self.start + duration
        handlers = self._install_signal_handlers()
        log.info("fleet starting", extra={"fields": self._describe()})
        try:
            await self.connections.connect_all()
            self.stats.connect_seconds = round(time.monotonic() - self._wall0, 3)
            self.clock.started()
            background = [
                asyncio.create_task(self.connections.keepalive_loop()),
                asyncio.create_task(self._report()),
            ]
            try:
                await self.scheduler.run(self._end, self._stop)
                self._generating = False
                await self.connections.drain(self.drain_timeout)
                if self.progress is not None:
                    self.progress(self.snapshot())
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
        finally:
            self._remove_signal_handlers(handlers)
            self.connections.close_all()
            self._acked.close()
            self._finalize_stats()
            if self.resume:
                self.checkpoint.save(
                    (link.device for link in self.links), min(self.sim_now(), self._end)
                )
            (self.run_dir / "stats.json").write_text(json.dumps(self.stats.summary(), indent=2))
        log.info("fleet stopped", extra={"fields": self.stats.summary()})
        return self.stats

    def stop(self) -> None:
        """Stop generating, drain, disconnect; a second call stops without waiting to drain.
        Safe from other threads and from signal handlers."""
        self.connections.force = self._stop_requested
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)

    def set_speed(self, speed: float) -> None:
        """Change the speed before `run` (the demo picks it once it knows where the clocks
        of a resumed fleet stand)."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.clock.speed = self.stats.speed = speed

    def sim_now(self) -> float:
        return self.clock.now()

    def snapshot(self) -> dict[str, Any]:
        """Live counters for a progress display."""
        self._finalize_stats(per_device=False)
        out = self.stats.summary()
        out["sim_now"] = iso(min(self.sim_now(), self._end))
        out["phase"] = (
            "connecting" if not self.clock.t0 else ("running" if self._generating else "draining")
        )
        return out

    def acked_readings(self) -> list[tuple[str, int]]:
        """(device_id, seq) of every valid reading the broker acknowledged in this run."""
        return list(read_acked(Path(self.stats.acked_path), kinds={"reading"}))

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._acked.flush()
            snapshot = self.snapshot()
            if self.progress is not None:
                self.progress(snapshot)

    def _finalize_stats(self, per_device: bool = True) -> None:
        """Bring the derived figures up to date (the counters are kept as events happen)."""
        stats = self.stats
        stats.observe(
            online=self.connections.online,
            in_flight=self.connections.in_flight(),
            buffered=self.connections.buffered(),
        )
        stats.faults = dict(self._fault_totals)
        stats.sim_end = iso(min(self.sim_now(), self._end))
        stats.wall_seconds = round(time.monotonic() - self._wall0, 3) if self._wall0 else 0.0
        if per_device:
            stats.per_device = {link.device.identity.device_id: link.counts for link in self.links}

    def _install_signal_handlers(self) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        assert self._loop is not None
        installed = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(signum, self.stop)
                installed.append(signum)
        return installed

    def _remove_signal_handlers(self, installed: list[int]) -> None:
        assert self._loop is not None
        for signum in installed:
            self._loop.remove_signal_handler(signum)

    def _describe(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "devices": len(self.links),
            "speed": self.speed,
            "interval_s": self.interval,
            "sim_start": iso(self.start),
            "faults": self.faults.rates,
            "seed": self.seed,
        }
