"""The fleet: thousands of simulated devices on one asyncio loop, each on its own MQTT
connection with its own login, client id and last will.

Simulated time is `start + speed * wall time elapsed` (the clock starts once every device has
had its first connection attempt). A single scheduler task pops due readings from a heap; each
device's messages go to its outbox and leave through its connection, at most `window` QoS 1
publishes in flight. Every PUBACK is recorded, with the (device id, seq, kind) it
acknowledged, in `acked.tsv` of the run's directory: what the broker accepted is exactly
what the platform must store. Lost connections put their unacknowledged messages back in
the outbox (in seq order) and reconnect with backoff; at the end, or on stop(), the fleet
reconnects devices away on a disconnect fault, drains every outbox, marks each device
`offline` and disconnects cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import json
import logging
import random
import secrets
import signal
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.core.stack.process import raise_open_files_limit
from gridshare.core.tls import CertificateAuthority
from gridshare.gateway.identity import DeviceIdentity
from gridshare.sim.device import Outgoing, SimDevice, status_message
from gridshare.sim.faults import FaultPlan
from gridshare.sim.mqtt import MqttConnection, MqttError, broker_target, connect_packet

log = logging.getLogger(__name__)

READING, RECONNECT = 0, 1
ONLINE, CONNECTING, OFFLINE, AWAY = "online", "connecting", "offline", "away"
MAX_BUFFER = 20_000  # per device, while it cannot publish; the oldest are dropped beyond
MAX_ATTEMPTS = 5  # a message whose publication lost the connection this often is dropped
TOO_LARGE = 0x95  # MQTT 5 "packet too large", counted for messages the broker could not take


@dataclass
class DeviceCounts:
    """Per-device message counts of a run."""

    generated: int = 0
    published: int = 0
    acked: int = 0
    acked_readings: int = 0
    refused: int = 0
    dropped: int = 0


@dataclass
class FleetStats:
    """What a run did. `acked` counts broker PUBACKs with a success code (telemetry only);
    `acked_path` lists each of them as `device_id<TAB>seq<TAB>kind`."""

    run_id: str
    devices: int
    sim_start: str
    sim_end: str = ""
    speed: float = 0.0
    wall_seconds: float = 0.0
    connect_seconds: float = 0.0
    online: int = 0
    connected_peak: int = 0
    generated: int = 0
    published: int = 0
    acked: int = 0
    acked_readings: int = 0
    refused: int = 0
    refused_reasons: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    buffered: int = 0
    dropped: int = 0
    connects: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    lag_seconds: float = 0.0
    lag_max_seconds: float = 0.0
    acked_path: str = ""
    stopped_early: bool = False
    per_device: dict[str, DeviceCounts] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Everything but the per-device table (for logs and JSON)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_device"}
        out["faults"] = dict(self.faults)
        out["refused_reasons"] = dict(self.refused_reasons)
        return out


class Link:
    """One device's network side: connection, outbox, in-flight publishes."""

    __slots__ = (
        "conn", "counts", "device", "inflight", "next_pid", "node", "outbox", "retries", "state",
    )  # fmt: skip

    def __init__(self, device: SimDevice, node: int = 0) -> None:
        self.device = device
        self.node = node  # which broker node to connect to next (clustered broker)
        self.conn: MqttConnection | None = None
        self.state = OFFLINE
        self.outbox: deque[Outgoing] = deque()
        self.inflight: dict[int, Outgoing] = {}
        self.next_pid = 0
        self.retries = 0
        self.counts = DeviceCounts()

    def packet_id(self) -> int:
        while True:
            self.next_pid = self.next_pid % 65535 + 1
            if self.next_pid not in self.inflight:
                return self.next_pid


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
        self.speed = speed
        self.interval = interval
        self.faults = faults or FaultPlan()
        self.jitter = jitter
        self.window = window
        self.max_backlog = max_backlog
        self.keepalive = keepalive
        self.connect_concurrency = connect_concurrency
        self.drain_timeout = drain_timeout
        self.resume = resume
        self.progress = progress
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
        self.run_dir = settings.state_path / "sim" / self.run_id
        self.checkpoint_path = settings.state_path / "sim" / "checkpoint.json"
        checkpoint = self._read_checkpoint() if resume else {}
        self.start = _start_time(start, checkpoint, self.identities)
        resumed_until = max(
            (
                checkpoint[i.device_id].get("sim_time", 0.0)
                for i in self.identities
                if i.device_id in checkpoint
            ),
            default=0.0,
        )
        if resumed_until > self.start:
            log.warning(
                "sim start is before where these devices' last run ended: their clocks go back"
                " while seq and meters continue",
                extra={"fields": {"start": _iso(self.start), "last_run_end": _iso(resumed_until)}},
            )
        self._fault_totals: dict[str, int] = {}
        # A clustered broker: devices spread over its nodes and move to the next on failure.
        self.endpoints = cluster.mqtt_endpoints(settings) or [
            (settings.mqtt_host, settings.mqtt_port)
        ]
        self.protocol = 4 if cluster.enabled(settings) else 5
        self.links = [
            Link(
                SimDevice(
                    identity, seed, self.start, interval, self.faults, jitter, self._fault_totals
                ),
                node=index % len(self.endpoints),
            )
            for index, identity in enumerate(self.identities)
        ]
        self._online = 0
        for link in self.links:
            saved = checkpoint.get(link.device.identity.device_id)
            if saved:
                link.device.resume(
                    saved["seq"], saved["energy_wh"], saved["revenue_minor"], saved["sessions"]
                )
        self.stats = FleetStats(
            run_id=self.run_id,
            devices=len(self.links),
            sim_start=_iso(self.start),
            speed=speed,
            acked_path=str(self.run_dir / "acked.tsv"),
        )
        self._refused: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._force = False
        self._generating = True
        self._t0 = 0.0
        self._wall0 = 0.0
        self._end = self.start
        self._acked_file: Any = None
        self._connect_slots: asyncio.Semaphore | None = None
        self._stack_ca: str | None = None  # for identity files without a broker URL and CA
        self._tasks: set[asyncio.Task[Any]] = set()

    # ----- public API -----

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
        self._connect_slots = asyncio.Semaphore(self.connect_concurrency)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._acked_file = open(self.run_dir / "acked.tsv", "a", buffering=1 << 16)  # noqa: SIM115
        self._wall0 = time.monotonic()
        self._end = self.start + duration
        handlers = self._install_signal_handlers()
        log.info("fleet starting", extra={"fields": self._describe()})
        try:
            await self._connect_all()
            self.stats.connect_seconds = round(time.monotonic() - self._wall0, 3)
            self._t0 = time.monotonic()
            background = [
                asyncio.create_task(self._keepalive()),
                asyncio.create_task(self._report()),
            ]
            try:
                await self._schedule(self.start + duration)
                await self._finish()
                if self.progress is not None:
                    self.progress(self.snapshot())
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
        finally:
            self._remove_signal_handlers(handlers)
            self._close_all()
            self._acked_file.close()
            self._finalize_stats()
            if self.resume:
                self._write_checkpoint()
            (self.run_dir / "stats.json").write_text(json.dumps(self.stats.summary(), indent=2))
        log.info("fleet stopped", extra={"fields": self.stats.summary()})
        return self.stats

    def stop(self) -> None:
        """Stop generating, drain, disconnect; a second call stops without waiting to drain.
        Safe from other threads and from signal handlers."""
        self._force = self._stop_requested
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)

    def set_speed(self, speed: float) -> None:
        """Change the speed before `run` (the demo picks it once it knows where the clocks
        of a resumed fleet stand)."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = self.stats.speed = speed

    def sim_now(self) -> float:
        if not self._t0:
            return self.start
        return self.start + self.speed * (time.monotonic() - self._t0)

    def snapshot(self) -> dict[str, Any]:
        """Live counters for a progress display."""
        self._finalize_stats(per_device=False)
        out = self.stats.summary()
        out["sim_now"] = _iso(min(self.sim_now(), self._end))
        out["phase"] = (
            "connecting" if not self._t0 else ("running" if self._generating else "draining")
        )
        return out

    def acked_readings(self) -> list[tuple[str, int]]:
        """(device_id, seq) of every valid reading the broker acknowledged in this run."""
        return list(read_acked(Path(self.stats.acked_path), kinds={"reading"}))

    # ----- connections -----

    async def _connect_all(self) -> None:
        await asyncio.gather(*(self._connect(link) for link in self.links))

    async def _connect(self, link: Link) -> None:
        if link.state in (ONLINE, CONNECTING, AWAY) or self._force:
            return
        link.state = CONNECTING
        identity = link.device.identity
        loop = asyncio.get_running_loop()
        assert self._connect_slots is not None
        try:
            host, port, tls = self._broker(identity, link)
            async with self._connect_slots:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: MqttConnection(self._on_puback, self._on_lost, self.protocol),
                        host,
                        port,
                        ssl=tls,
                        server_hostname=host if tls else None,
                    ),
                    timeout=10,
                )
                conn.link = link
                link.conn = conn
                conn.start(
                    connect_packet(
                        identity.device_id,
                        identity.mqtt_username,
                        identity.mqtt_password,
                        self.keepalive,
                        will_topic=link.device.status_topic,
                        will_payload=b"offline",
                        protocol=self.protocol,
                    ),
                    self.keepalive,
                )
                await asyncio.wait_for(conn.connack, timeout=10)
                if link.conn is not conn or not conn.connected:
                    raise MqttError("connection lost right after CONNACK")
        except (OSError, MqttError, TimeoutError) as exc:
            self.stats.connect_failures += 1
            if link.conn is not None:
                link.conn.drop()
            link.conn = None
            link.state = OFFLINE
            self._retry_later(link, exc)
            return
        self._set_state(link, ONLINE)
        link.retries = 0
        self.stats.connects += 1
        link.outbox.appendleft(status_message(link.device, online=True))
        self._pump(link)

    def _broker(
        self, identity: DeviceIdentity, link: Link
    ) -> tuple[str, int, ssl.SSLContext | None]:
        """Where the device connects: a clustered broker's node (its own listeners), else its
        identity's TLS device listener and CA (files written before devices had them: the
        stack's device listener and CA)."""
        if cluster.enabled(self.settings):
            host, port = self.endpoints[link.node % len(self.endpoints)]
            return host, port, None
        if identity.mqtt_url:
            return broker_target(identity.mqtt_url, identity.ca)
        if self._stack_ca is None:
            self._stack_ca = CertificateAuthority(self.settings).ca_pem()
        return broker_target(self.settings.mqtt_device_url, self._stack_ca)

    def _retry_later(self, link: Link, exc: BaseException | None) -> None:
        link.node += 1  # fail over to the next broker node (a no-op with one broker)
        if self._force:
            return
        delay = min(10.0, 0.25 * 2**link.retries) * random.uniform(0.5, 1.0)
        link.retries += 1
        if link.retries in (1, 5) or link.retries % 20 == 0:
            log.warning(
                "device cannot connect; retrying",
                extra={
                    "fields": {
                        "device_id": link.device.identity.device_id,
                        "error": str(exc)[:200],
                        "retry_in_s": round(delay, 2),
                    }
                },
            )
        assert self._loop is not None
        self._loop.call_later(delay, lambda: self._spawn(self._connect(link)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_lost(self, conn: MqttConnection, exc: Exception | None) -> None:
        link = self._link_of(conn)
        if link is None:
            return
        link.conn = None
        self._requeue(link)
        if link.state == ONLINE:
            self._set_state(link, OFFLINE)
            self.stats.reconnects += 1
            self._retry_later(link, exc)

    def _link_of(self, conn: MqttConnection) -> Link | None:
        link = getattr(conn, "link", None)
        return link if link is not None and link.conn is conn else None

    def _requeue(self, link: Link) -> None:
        """Unacknowledged publishes go back to the front of the outbox, in seq order; a stale
        `online` status is dropped (a new one is sent on connect)."""
        pending = sorted(
            (m for m in link.inflight.values() if m.kind != "status"), key=lambda m: m.seq
        )
        link.inflight.clear()
        doomed = [m for m in pending if m.attempts >= MAX_ATTEMPTS]
        if doomed:  # e.g. a broker that drops the connection on this very message
            pending = [m for m in pending if m.attempts < MAX_ATTEMPTS]
            link.counts.dropped += len(doomed)
            self.stats.dropped += len(doomed)
        link.outbox.extendleft(reversed(pending))
        if any(m.kind == "status" for m in link.outbox):
            link.outbox = deque(m for m in link.outbox if m.kind != "status")

    def _go_away(self, link: Link, offline_seconds: float, heap: list[Any]) -> None:
        """A disconnect fault: drop the connection as a network failure would."""
        conn = link.conn
        link.conn = None
        self._set_state(link, AWAY)
        self._requeue(link)
        if conn is not None:
            conn.drop()
        heapq.heappush(heap, (self.sim_now() + offline_seconds, RECONNECT, id(link), link))

    # ----- publishing -----

    def _pump(self, link: Link) -> None:
        conn = link.conn
        if conn is None or link.state != ONLINE:
            return
        limit = min(self.window, conn.receive_maximum)
        outbox, inflight, counts, stats = link.outbox, link.inflight, link.counts, self.stats
        while outbox and len(inflight) < limit:
            message = outbox.popleft()
            if len(message.payload) + len(message.topic) + 16 > conn.maximum_packet_size:
                self._refuse(link, TOO_LARGE)  # the broker said it takes no packet this big
                continue
            packet_id = link.packet_id()
            inflight[packet_id] = message
            message.attempts += 1
            conn.publish(message.topic, message.payload, packet_id, message.retain)
            if message.kind != "status":
                counts.published += 1
                stats.published += 1

    def _on_puback(self, conn: MqttConnection, packet_id: int, reason: int) -> None:
        link = self._link_of(conn)
        if link is None:
            return
        message = link.inflight.pop(packet_id, None)
        if message is None:
            return
        if message.kind != "status":
            counts, stats = link.counts, self.stats
            if reason < 0x80:
                counts.acked += 1
                stats.acked += 1
                if message.kind == "reading":
                    counts.acked_readings += 1
                    stats.acked_readings += 1
                self._acked_file.write(
                    f"{link.device.identity.device_id}\t{message.seq}\t{message.kind}\n"
                )
            else:
                self._refuse(link, reason)
        self._pump(link)

    def _refuse(self, link: Link, reason: int) -> None:
        link.counts.refused += 1
        self.stats.refused += 1
        self._refused[f"0x{reason:02x}"] += 1

    def _enqueue(self, link: Link, messages: list[Outgoing]) -> None:
        link.outbox.extend(messages)
        generated = sum(1 for m in messages if m.kind != "status")
        link.counts.generated += generated
        self.stats.generated += generated
        overflow = len(link.outbox) - MAX_BUFFER
        if overflow > 0 and link.state != ONLINE:
            for _ in range(overflow):
                link.outbox.popleft()
            link.counts.dropped += overflow
            self.stats.dropped += overflow
        self._pump(link)

    # ----- the schedule -----

    async def _schedule(self, end: float) -> None:
        """Generate every reading due up to `end` as simulated time reaches it."""
        assert self._stop is not None
        heap: list[Any] = [(link.device.next_due, READING, id(link), link) for link in self.links]
        heapq.heapify(heap)
        since_check = 0
        while not self._stop.is_set():
            now = min(self.sim_now(), end)
            handled = 0
            while heap and heap[0][0] <= now and handled < 500:
                _, kind, _, link = heapq.heappop(heap)
                handled += 1
                if kind == RECONNECT:
                    if link.state == AWAY:
                        link.state = OFFLINE
                        self._spawn(self._connect(link))
                    continue
                messages, offline = link.device.reading()
                self._enqueue(link, messages)
                if offline and link.state == ONLINE:
                    self._go_away(link, offline, heap)
                heapq.heappush(heap, (link.device.next_due, READING, id(link), link))
            lag = round(max(0.0, now - heap[0][0]) if heap else 0.0, 1)
            self.stats.lag_seconds = lag
            self.stats.lag_max_seconds = max(self.stats.lag_max_seconds, lag)
            since_check += handled
            if since_check >= 1000:
                since_check = 0
                await self._wait_for_backlog()
            if handled == 500:
                await asyncio.sleep(0)
                continue
            if now >= end and (not heap or heap[0][0] > end):
                break
            wait = 0.2 if not heap else (heap[0][0] - self.sim_now()) / self.speed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.001, min(0.2, wait)))
        self.stats.stopped_early = self._stop.is_set()
        for _, kind, _, link in heap:
            if kind == RECONNECT and link.state == AWAY:
                link.state = OFFLINE

    async def _wait_for_backlog(self) -> None:
        """Pause generation while connected devices hold more than `max_backlog` unsent
        messages (devices that cannot publish buffer without limit up to MAX_BUFFER)."""
        assert self._stop is not None
        stats = self.stats
        while not self._stop.is_set():
            unfinished = stats.generated - stats.acked - stats.refused - stats.dropped
            if unfinished <= self.max_backlog:
                return
            backlog = sum(len(link.outbox) for link in self.links if link.state == ONLINE)
            if backlog <= self.max_backlog:
                return
            await asyncio.sleep(0.02)

    async def _finish(self) -> None:
        """Deliver what is buffered (reconnecting devices away on a fault), then disconnect."""
        self._generating = False
        for link in self.links:
            held = link.device.flush_held()
            if held:
                self._enqueue(link, held)
            if link.state in (OFFLINE, AWAY) and not self._force:
                link.state = OFFLINE
                self._spawn(self._connect(link))
        deadline = time.monotonic() + self.drain_timeout
        while time.monotonic() < deadline and not self._force:
            if all(not link.outbox and not link.inflight for link in self.links):
                break
            await asyncio.sleep(0.05)
        for link in self.links:
            if link.state == ONLINE:
                link.outbox.append(status_message(link.device, online=False))
                self._pump(link)
        deadline = time.monotonic() + min(5.0, self.drain_timeout)
        while time.monotonic() < deadline and not self._force:
            if all(not link.inflight for link in self.links if link.state == ONLINE):
                break
            await asyncio.sleep(0.02)

    def _close_all(self) -> None:
        self._force = True
        for link in self.links:
            conn = link.conn
            link.conn = None
            if link.state == ONLINE:
                self._requeue(link)
            self._set_state(link, OFFLINE)
            if conn is not None:
                conn.disconnect()
        for task in list(self._tasks):
            task.cancel()

    # ----- housekeeping -----

    async def _keepalive(self) -> None:
        """PINGREQ on connections idle for half their keep-alive, for all devices."""
        while True:
            await asyncio.sleep(2.0)
            now = time.monotonic()
            for link in self.links:
                conn = link.conn
                idle = conn is not None and now - conn.last_sent > conn.keepalive / 2
                if idle and link.state == ONLINE:
                    conn.ping()

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._acked_file.flush()
            snapshot = self.snapshot()
            if self.progress is not None:
                self.progress(snapshot)

    def _finalize_stats(self, per_device: bool = True) -> None:
        """Bring the derived figures up to date (the counters are kept as events happen)."""
        stats = self.stats
        stats.in_flight = sum(len(link.inflight) for link in self.links)
        stats.buffered = sum(len(link.outbox) for link in self.links)
        stats.online = self._online
        stats.connected_peak = max(stats.connected_peak, self._online)
        stats.faults = dict(self._fault_totals)
        stats.refused_reasons = dict(self._refused)
        stats.sim_end = _iso(min(self.sim_now(), self._end))
        stats.wall_seconds = round(time.monotonic() - self._wall0, 3) if self._wall0 else 0.0
        if per_device:
            stats.per_device = {link.device.identity.device_id: link.counts for link in self.links}

    def _set_state(self, link: Link, state: str) -> None:
        self._online += (state == ONLINE) - (link.state == ONLINE)
        link.state = state

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
            "sim_start": _iso(self.start),
            "faults": self.faults.rates,
            "seed": self.seed,
        }

    # ----- checkpoint: seq and meters carry over to the next run -----

    def _read_checkpoint(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.checkpoint_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _write_checkpoint(self) -> None:
        """Merge this run's devices into the checkpoint (under a lock: runs may overlap)."""
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.checkpoint_path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            saved = self._read_checkpoint()
            sim_end = min(self.sim_now(), self._end)
            for link in self.links:
                if link.device.seq:
                    saved[link.device.identity.device_id] = link.device.meters() | {
                        "sim_time": sim_end
                    }
            tmp = self.checkpoint_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(saved))
            tmp.replace(self.checkpoint_path)


def read_acked(path: Path, kinds: set[str] | None = None) -> list[tuple[str, int]]:
    """(device_id, seq) pairs of an `acked.tsv`, optionally only of some kinds."""
    out = []
    with open(path) as handle:
        for line in handle:
            device_id, seq, kind = line.rstrip("\n").split("\t")
            if kinds is None or kind in kinds:
                out.append((device_id, int(seq)))
    return out


def _start_time(
    start: datetime | float | None,
    checkpoint: dict[str, dict[str, Any]],
    identities: Sequence[DeviceIdentity],
) -> float:
    """The given start; by default now, or where a previous run of these devices ended if
    that is later (so device time never runs backwards across runs)."""
    if isinstance(start, datetime):
        return start.timestamp()
    if start is not None:
        return float(start)
    previous = [
        checkpoint[i.device_id].get("sim_time", 0.0)
        for i in identities
        if i.device_id in checkpoint
    ]
    return max([time.time(), *previous])


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
