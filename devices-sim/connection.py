"""The fleet's network side: each device's MQTT connection, outbox and in-flight publishes.

At most `window` QoS 1 publishes are in flight per device. Every PUBACK is logged with the
(device id, seq, kind) it acknowledged. Lost connections put their unacknowledged messages
back in the outbox (in seq order) and reconnect with backoff, to the next node of a clustered
broker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.core.tls import CertificateAuthority
from gridshare.gateway.identity import DeviceIdentity
from gridshare.sim.device import Outgoing, SimDevice, status_message
from gridshare.sim.mqtt import MqttConnection, MqttError, broker_target, connect_packet
from gridshare.sim.stats import AckedLog, DeviceCounts, FleetStats

log = logging.getLogger(__name__)

ONLINE, CONNECTING, OFFLINE, AWAY = "online", "connecting", "offline", "away"
MAX_BUFFER = 20_000  # per device, while it cannot publish; the oldest are dropped beyond
MAX_ATTEMPTS = 5  # a message whose publication lost the connection this often is dropped
TOO_LARGE = 0x95  # MQTT 5 "packet too large", counted for messages the broker could not take


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


@dataclass(frozen=True)
class LinkOptions:
    """How every device uses its connection."""

    window: int = 20  # QoS 1 publishes in flight per device
    keepalive: int = 60  # seconds
    connect_concurrency: int = 200  # connection attempts at once, fleet-wide


class Connections:
    """Connect, publish and reconnect every link of a fleet against the broker of `settings`.

    `force` set: no more (re)connection attempts and no waiting to drain.
    """

    def __init__(
        self,
        settings: Settings,
        links: Sequence[Link],
        stats: FleetStats,
        acked: AckedLog,
        options: LinkOptions,
    ) -> None:
        self.settings, self.links, self.stats, self.acked = settings, links, stats, acked
        self.window, self.keepalive = options.window, options.keepalive
        self.connect_concurrency = options.connect_concurrency
        self.protocol = 4 if cluster.enabled(settings) else 5
        # A clustered broker: devices spread over its nodes and move to the next on failure.
        self.endpoints = cluster.mqtt_endpoints(settings) or [
            (settings.mqtt_host, settings.mqtt_port)
        ]
        for index, link in enumerate(links):
            link.node = index % len(self.endpoints)
        self.force = False
        self.online = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connect_slots: asyncio.Semaphore | None = None
        self._stack_ca: str | None = None  # for identity files without a broker URL and CA
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        """Bind to the running event loop (call from it before connecting)."""
        self._loop = asyncio.get_running_loop()
        self._connect_slots = asyncio.Semaphore(self.connect_concurrency)

    async def connect_all(self) -> None:
        await asyncio.gather(*(self.connect(link) for link in self.links))

    async def connect(self, link: Link) -> None:
        if link.state in (ONLINE, CONNECTING, AWAY) or self.force:
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
        self.pump(link)

    def reconnect_soon(self, link: Link) -> None:
        """Connect an offline or away device again in the background."""
        link.state = OFFLINE
        self._spawn(self.connect(link))

    def go_away(self, link: Link) -> None:
        """A disconnect fault: drop the connection as a network failure would."""
        conn = link.conn
        link.conn = None
        self._set_state(link, AWAY)
        self._requeue(link)
        if conn is not None:
            conn.drop()

    def enqueue(self, link: Link, messages: list[Outgoing]) -> None:
        """Queue a device's new messages; beyond MAX_BUFFER an unconnected device drops its
        oldest."""
        link.outbox.extend(messages)
        self.stats.generated_by(link.counts, sum(1 for m in messages if m.kind != "status"))
        overflow = len(link.outbox) - MAX_BUFFER
        if overflow > 0 and link.state != ONLINE:
            for _ in range(overflow):
                link.outbox.popleft()
            self.stats.dropped_by(link.counts, overflow)
        self.pump(link)

    def pump(self, link: Link) -> None:
        """Publish from the outbox while the window has room."""
        conn = link.conn
        if conn is None or link.state != ONLINE:
            return
        limit = min(self.window, conn.receive_maximum)
        outbox, inflight, counts, stats = link.outbox, link.inflight, link.counts, self.stats
        while outbox and len(inflight) < limit:
            message = outbox.popleft()
            if len(message.payload) + len(message.topic) + 16 > conn.maximum_packet_size:
                stats.refused_by(counts, TOO_LARGE)  # the broker takes no packet this big
                continue
            packet_id = link.packet_id()
            inflight[packet_id] = message
            message.attempts += 1
            conn.publish(message.topic, message.payload, packet_id, message.retain)
            if message.kind != "status":
                stats.published_by(counts)

    def backlog(self) -> int:
        """Unsent messages of the connected devices."""
        return sum(len(link.outbox) for link in self.links if link.state == ONLINE)

    def in_flight(self) -> int:
        return sum(len(link.inflight) for link in self.links)

    def buffered(self) -> int:
        return sum(len(link.outbox) for link in self.links)

    async def drain(self, timeout: float) -> None:
        """Deliver what is buffered (reconnecting devices away on a fault), then send each
        device's `offline` status."""
        for link in self.links:
            held = link.device.flush_held()
            if held:
                self.enqueue(link, held)
            if link.state in (OFFLINE, AWAY) and not self.force:
                self.reconnect_soon(link)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.force:
            if all(not link.outbox and not link.inflight for link in self.links):
                break
            await asyncio.sleep(0.05)
        for link in self.links:
            if link.state == ONLINE:
                link.outbox.append(status_message(link.device, online=False))
                self.pump(link)
        deadline = time.monotonic() + min(5.0, timeout)
        while time.monotonic() < deadline and not self.force:
            if all(not link.inflight for link in self.links if link.state == ONLINE):
                break
            await asyncio.sleep(0.02)

    def close_all(self) -> None:
        """Disconnect every device now and stop reconnecting."""
        self.force = True
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

    async def keepalive_loop(self) -> None:
        """PINGREQ on connections idle for half their keep-alive, for all devices."""
        while True:
            await asyncio.sleep(2.0)
            now = time.monotonic()
            for link in self.links:
                conn = link.conn
                idle = conn is not None and now - conn.last_sent > conn.keepalive / 2
                if idle and link.state == ONLINE:
                    conn.ping()

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
        if self.force:
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
        self._loop.call_later(delay, lambda: self._spawn(self.connect(link)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
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

    def _on_puback(self, conn: MqttConnection, packet_id: int, reason: int) -> None:
        link = self._link_of(conn)
        if link is None:
            return
        message = link.inflight.pop(packet_id, None)
        if message is None:
            return
        if message.kind != "status":
            if reason < 0x80:
                self.stats.acked_by(link.counts, message.kind == "reading")
                self.acked.write(link.device.identity.device_id, message.seq, message.kind)
            else:
                self.stats.refused_by(link.counts, reason)
        self.pump(link)

    @staticmethod
    def _link_of(conn: MqttConnection) -> Link | None:
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
            self.stats.dropped_by(link.counts, len(doomed))
        link.outbox.extendleft(reversed(pending))
        if any(m.kind == "status" for m in link.outbox):
            link.outbox = deque(m for m in link.outbox if m.kind != "status")

    def _set_state(self, link: Link, state: str) -> None:
        self.online += (state == ONLINE) - (link.state == ONLINE)
        link.state = state
