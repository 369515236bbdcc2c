"""Publishing a bridged device's readings to the broker as that device, QoS 1.

Each device gets its own MQTT session with its own login (client id = username = device id,
as the broker's ACL requires), its retained `online` status and `offline` last will, like the
native firmware. `publish` returns only once the broker acknowledged (PUBACK): the bridge
answers the charger after that, so anything the broker did not take is retried by the
charger. A lost connection is re-established and the same bytes are sent again.

Thousands of sessions share one event loop on the simulator's asyncio MQTT protocol; one
task sends the keep-alives of all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from gridshare.core.errors import GridshareError, ServiceUnreachable
from gridshare.core.payloads import STATUS_TOPIC, TELEMETRY_TOPIC
from gridshare.core.settings import Settings
from gridshare.core.stack.process import port_open
from gridshare.sim.mqtt import MqttConnection, MqttError, connect_packet

KEEPALIVE = 60
log = logging.getLogger(__name__)


def require_broker(settings: Settings) -> None:
    """Fail at start, in one line, when the broker is not there."""
    if not port_open(settings.mqtt_host, settings.mqtt_port):
        raise ServiceUnreachable(
            "broker", "GRIDSHARE_MQTT_URL", settings.mqtt_url, "connection refused"
        )


class PublishError(GridshareError):
    """The broker did not acknowledge a reading in time (or refused it)."""


@dataclass(frozen=True)
class BrokerLogin:
    """Where and as whom a device connects: (url, username, password, optional CA PEM).
    `mqtts://` or a CA switches the session to TLS."""

    url: str
    username: str
    password: str
    ca: str | None = None

    def tls(self) -> ssl.SSLContext | None:
        if self.ca is None and urlsplit(self.url).scheme != "mqtts":
            return None
        return (
            ssl.create_default_context(cadata=self.ca) if self.ca else ssl.create_default_context()
        )


class DevicePublisher:
    """One device's broker session (see module docstring)."""

    def __init__(self, login: BrokerLogin) -> None:
        self.login = login
        self.device_id = login.username
        self.telemetry_topic = TELEMETRY_TOPIC.format(device_id=self.device_id)
        self.status_topic = STATUS_TOPIC.format(device_id=self.device_id)
        self.conn: MqttConnection | None = None
        self._ids = itertools.cycle(range(1, 65536))
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._connecting = asyncio.Lock()

    async def publish(self, payload: bytes, timeout: float = 20.0) -> None:
        """Send a reading and wait for the broker's PUBACK, reconnecting as needed."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(f"{self.device_id}: no PUBACK within {timeout:.0f} s")
            try:
                conn = await asyncio.wait_for(self._connected(), remaining)
                packet_id = next(self._ids)
                waiter = asyncio.get_running_loop().create_future()
                self._waiting[packet_id] = waiter
                conn.publish(self.telemetry_topic, payload, packet_id)
                reason = await asyncio.wait_for(waiter, deadline - time.monotonic())
            except (OSError, MqttError, ConnectionError) as exc:
                log.warning(
                    "broker session lost; publishing again",
                    extra={"fields": {"device_id": self.device_id, "error": str(exc)[:200]}},
                )
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            except TimeoutError:
                self.drop()
                continue
            if reason >= 0x80:
                raise PublishError(f"{self.device_id}: broker refused the reading (0x{reason:02x})")
            return

    async def connect(self, timeout: float = 10.0) -> bool:
        """Open the session ahead of the first reading; False (logged) if the broker does
        not answer now: `publish` tries again."""
        try:
            await asyncio.wait_for(self._connected(), timeout)
        except (OSError, MqttError, ConnectionError, TimeoutError) as exc:
            log.warning(
                "broker session not open yet",
                extra={"fields": {"device_id": self.device_id, "error": str(exc)[:200]}},
            )
            return False
        return True

    async def close(self) -> None:
        """Say `offline` (retained) and end the session cleanly."""
        conn = self.conn
        if conn is not None and conn.connected:
            conn.publish(self.status_topic, b"offline", next(self._ids), retain=True)
            await asyncio.sleep(0)
            conn.disconnect()
        self.conn = None

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.drop()
        self.conn = None

    def ping_if_idle(self, now: float) -> None:
        conn = self.conn
        if conn is not None and conn.connected and now - conn.last_sent > conn.keepalive / 2:
            conn.ping()

    async def _connected(self) -> MqttConnection:
        async with self._connecting:
            if self.conn is not None and self.conn.connected:
                return self.conn
            url = urlsplit(self.login.url)
            tls = self.login.tls()
            _, conn = await asyncio.get_running_loop().create_connection(
                lambda: MqttConnection(self._on_puback, self._on_lost),
                url.hostname or "127.0.0.1",
                url.port or (8883 if tls else 1883),
                ssl=tls,
            )
            conn.start(
                connect_packet(
                    self.device_id,
                    self.login.username,
                    self.login.password,
                    KEEPALIVE,
                    will_topic=self.status_topic,
                    will_payload=b"offline",
                ),
                KEEPALIVE,
            )
            try:
                await asyncio.wait_for(conn.connack, 10)
            except BaseException:
                conn.drop()
                raise
            self.conn = conn
            conn.publish(self.status_topic, b"online", next(self._ids), retain=True)
            return conn

    def _on_puback(self, conn: MqttConnection, packet_id: int, reason: int) -> None:
        waiter = self._waiting.pop(packet_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(reason)

    def _on_lost(self, conn: MqttConnection, exc: Exception | None) -> None:
        if self.conn is conn:
            self.conn = None
        lost = MqttError(f"connection lost: {exc}" if exc else "connection closed")
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(lost)
        self._waiting.clear()


class Publishers:
    """The bridge's device sessions, by device id, with one keep-alive task for all."""

    def __init__(self) -> None:
        self.sessions: dict[str, DevicePublisher] = {}
        self._keepalive: asyncio.Task[None] | None = None

    def get(self, login: BrokerLogin) -> DevicePublisher:
        session = self.sessions.get(login.username)
        if session is None or session.login != login:
            session = self.sessions[login.username] = DevicePublisher(login)
        if self._keepalive is None:
            self._keepalive = asyncio.ensure_future(self._ping_loop())
        return session

    async def release(self, device_id: str) -> None:
        session = self.sessions.pop(device_id, None)
        if session is not None:
            await session.close()

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        for device_id in list(self.sessions):
            await self.release(device_id)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(5)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                session.ping_if_idle(now)
