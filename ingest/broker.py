"""The worker's MQTT side: a persistent MQTT v5 session with manual acknowledgements.

The session is fixed by the client id and kept by the broker for `SESSION_EXPIRY` seconds
(clean start off), so messages delivered but not yet acknowledged when the worker dies, or
published while it is away, are delivered again when it comes back under the same id.

Telemetry subscription: one worker subscribes plainly; several workers (`ingest_shared`)
subscribe through the shared subscription `$share/gridshare-ingest/…`, so each message goes
to one of them. Two properties of Mosquitto 2.0 decide how: it does not save shared
subscriptions in its persistence file, so after a broker restart messages published before
the workers re-subscribe reach nobody (the plain subscription is restored and queues them);
and it hands offline members of a share group their turn of the messages, held until they
return. Hence plain is the default, and a shared worker being removed for good is stopped
with `retire`: unsubscribe, commit what still arrives, end the session.

Status is always read through a plain subscription by every worker: MQTT 5 (§4.8.2) sends no
retained messages to shared subscriptions, and the status topic's state is retained; status
updates are idempotent, so every worker applying them is harmless.

This runs in the worker's receiving process (`receiver.py`): messages are handed on raw, as
tuples, to `deliver`; parsing and checking them is the main process's work. The process drives
paho from its own `select` loop (`pump`, paho's documented API for external event loops:
`socket`, `loop_read`, `loop_write`, `loop_misc`) rather than `loop_start`'s thread: the broker
socket and the worker's command pipe are watched in one thread, and a burst of messages is
read without a `select` and a keepalive check per message. That takes a third off paho's CPU
per received message (116 -> 79 µs measured), and the reconnect that `loop_forever` would do
is done here (`_reconnect`), with the same backoff.

PUBACKs are sent only by `ack`, after the batch holding the messages is committed. Each message
carries the session epoch it arrived in; if the broker ever reports a fresh session (it lost
ours), acks for messages of the old session are not sent, since their packet ids may now
name other messages.
"""

from __future__ import annotations

import contextlib
import logging
import select
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gridshare.core.broker_auth import INGEST_USER, BrokerAuth
from gridshare.core.errors import ConfigError
from gridshare.core.payloads import STATUS_FILTER, TELEMETRY_FILTER
from gridshare.core.settings import Settings
from gridshare.ingest.paho_socket import BufferedClient, BufferedSocket
from gridshare.ingest.pipe import AckKey, Raw

SHARE_GROUP = "gridshare-ingest"
SHARED_TELEMETRY = f"$share/{SHARE_GROUP}/{TELEMETRY_FILTER}"
SESSION_EXPIRY = 86400
KEEPALIVE = 30
RECONNECT_DELAYS = (1.0, 10.0)  # first and longest wait before reconnecting
BURST = 100  # packets read per readable socket before looking at anything else
log = logging.getLogger(__name__)


def credentials(settings: Settings) -> tuple[str, str]:
    """user:password from GRIDSHARE_MQTT_URL if given (containers), else the local stack's
    `gridshare-ingest` service account."""
    url = urlsplit(settings.mqtt_url)
    if url.username:
        return unquote(url.username), unquote(url.password or "")
    password = BrokerAuth(settings).service_accounts().get(INGEST_USER)
    if not password:
        raise ConfigError(
            "GRIDSHARE_MQTT_URL",
            f"has no user:password and the state dir has no {INGEST_USER} account;"
            " run `gridshare stack up` or put the credentials in the URL",
        )
    return INGEST_USER, password


class BrokerLink:
    """Receives messages and hands them to `deliver`; acknowledges on request; reconnects on
    its own; reports readiness (subscribed or not) to `subscribed`. Single-threaded: the
    owner calls `pump` in a loop."""

    def __init__(
        self,
        settings: Settings,
        client_id: str,
        receive_maximum: int,
        login: tuple[str, str],
        deliver: Callable[[Raw], None],
        subscribed: Callable[[bool], None],
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.deliver = deliver
        self.subscribed = subscribed
        self.epoch = 0
        self.telemetry = SHARED_TELEMETRY if settings.ingest_shared else TELEMETRY_FILTER
        self.unsubscribed = False
        self._connected = False
        self._refused: str | None = None
        self._delivered = 0
        self._delay = RECONNECT_DELAYS[0]
        self._reconnect_at = 0.0
        self._client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._client.username_pw_set(*login)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_unsubscribe = self._on_unsubscribe
        self._client.on_subscribe = self._on_subscribe
        self._properties = Properties(PacketTypes.CONNECT)
        self._properties.SessionExpiryInterval = SESSION_EXPIRY
        self._properties.ReceiveMaximum = receive_maximum

    def start(self, timeout: float = 10.0) -> str | None:
        """Connect (subscribing follows the CONNACK); why not (unreachable or refused), or
        None."""
        try:
            self._client.connect(
                self.settings.mqtt_host,
                self.settings.mqtt_port,
                keepalive=KEEPALIVE,
                clean_start=False,
                properties=self._properties,
            )
        except OSError as exc:
            return str(exc)
        deadline = time.monotonic() + timeout
        while not self._connected and self._client.socket() is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.pump(min(remaining, 0.5), ())
        if not self._connected or self._refused:
            self.stop()
            return self._refused or f"no CONNACK within {timeout:.0f}s"
        return None

    def pump(self, timeout: float, watch: Sequence[Any]) -> list[Any]:
        """One round of the event loop: wait up to `timeout` for the broker or for one of
        `watch` (objects with `fileno`) to become readable, read what arrived, write what is
        queued, keep the connection alive (or reconnect, after a backoff). Returns the
        readable ones of `watch`."""
        sock = self._client.socket()
        if sock is None:
            wait = max(0.0, min(timeout, self._reconnect_at - time.monotonic()))
            readable = select.select(list(watch), [], [], wait)[0]
            if time.monotonic() >= self._reconnect_at:
                self._reconnect()
            return readable
        buffered = sock if isinstance(sock, BufferedSocket) else None
        held = buffered.pending() if buffered else 0
        unsent = buffered.unsent() if buffered else 0
        writing = [sock] if self._client.want_write() or unsent else []
        try:
            readable = select.select([sock, *watch], writing, [], 0.0 if held else timeout)[0]
        except (OSError, ValueError):  # closed by a callback meanwhile
            return []
        if held or sock in readable:
            self._read_burst()
        if self._client.want_write():
            self._client.loop_write()
        self._client.loop_misc()
        self._flush()
        if self._client.socket() is None:
            self._lost()
        return [w for w in watch if w in readable]

    def ack(self, messages: Iterable[AckKey]) -> None:
        """PUBACK each (mid, qos, epoch), in the order received, if its session is still
        ours."""
        for mid, qos, epoch in messages:
            if qos and epoch == self.epoch:
                self._client.ack(mid, qos)
        self._flush()

    def unsubscribe(self) -> bool:
        """Ask for no further messages; `unsubscribed` turns True once the broker confirms.
        False if not connected (nothing asked)."""
        if not self._client.is_connected():
            return False
        self._client.unsubscribe([self.telemetry, STATUS_FILTER])
        return True

    def stop(self, end_session: bool = False, timeout: float = 10.0) -> None:
        """Disconnect after the queued acknowledgements are written; with `end_session`, the
        broker drops the session (only when nothing unacknowledged is left in it)."""
        properties = Properties(PacketTypes.DISCONNECT)
        properties.SessionExpiryInterval = 0 if end_session else SESSION_EXPIRY
        with contextlib.suppress(Exception):
            self._client.disconnect(properties=properties)
        deadline = time.monotonic() + timeout
        while (sock := self._client.socket()) is not None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                select.select([], [sock], [], 0.1)
            self._client.loop_write()

    def _read_burst(self) -> None:
        """Read up to `BURST` packets while they keep coming: each `loop_read` reads one
        packet, or finds nothing more to read and changes nothing."""
        for _ in range(BURST):
            before = self._delivered
            self._client.loop_read()
            sock = self._client.socket()
            if sock is None:
                return
            held = sock.pending() if isinstance(sock, BufferedSocket) else 0
            if self._delivered == before and not held:
                return

    def _flush(self) -> None:
        sock = self._client.socket()
        if isinstance(sock, BufferedSocket):
            sock.flush()

    def _lost(self) -> None:
        self._reconnect_at = time.monotonic() + self._delay

    def _reconnect(self) -> None:
        self._delay = min(self._delay * 2, RECONNECT_DELAYS[1])
        self._reconnect_at = time.monotonic() + self._delay
        try:
            self._client.reconnect()
        except OSError as exc:
            log.warning("broker unreachable", extra={"fields": {"error": str(exc)}})

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            log.error("broker refused login", extra={"fields": {"reason": str(reason_code)}})
            self._connected = True
            return
        self._delay = RECONNECT_DELAYS[0]
        if not flags.session_present:
            self.epoch += 1
        client.subscribe(
            [
                (self.telemetry, SubscribeOptions(qos=1)),
                (
                    STATUS_FILTER,
                    SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB),
                ),
            ]
        )
        log.info(
            "connected to broker",
            extra={
                "fields": {
                    "client_id": self.client_id,
                    "session_present": flags.session_present,
                    "epoch": self.epoch,
                    "subscription": self.telemetry,
                }
            },
        )
        self._connected = True

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        """Readiness: from here on the broker keeps telemetry for this session."""
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("subscription refused", extra={"fields": {"reasons": refused}})
            return
        self.subscribed(True)
        log.info("subscribed", extra={"fields": {"subscription": self.telemetry}})

    def _on_unsubscribe(self, *_: object) -> None:
        self.unsubscribed = True
        self.subscribed(False)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.subscribed(False)
        log.warning("disconnected from broker", extra={"fields": {"reason": str(reason_code)}})

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self._delivered += 1
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        self.deliver(
            (msg.mid, msg.qos, self.epoch, topic, msg.payload, time.time(), time.monotonic())
        )
