"""A minimal MQTT 5 publisher as an asyncio protocol: what one simulated device needs.
It speaks MQTT 3.1.1 too (`protocol=4`: no properties, no reason codes), for the clustered
broker, whose MQTT plugin takes 3.1.1.

CONNECT (credentials, retained last will), PUBLISH QoS 0/1 with retain, PUBACK with its reason
code, PINGREQ, DISCONNECT. Ten thousand of these share one event loop: per connection there is
one transport and a small parse buffer, no thread and no per-client timer; the fleet drives
keep-alives for all connections from a single task. General MQTT clients (paho) carry a
threaded loop, a message store and callbacks per client, which is what we avoid here; the
ingest side, which holds one connection, uses paho.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from gridshare.core.errors import GridshareError
from gridshare.core.tls import client_context

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
PINGREQ, PINGRESP, DISCONNECT = 0xC0, 0xD0, 0xE0
RECEIVE_MAXIMUM, SERVER_KEEP_ALIVE, MAXIMUM_PACKET_SIZE = 0x21, 0x13, 0x27

# Property id -> encoded size kind (MQTT 5, section 2.2.2.2).
_BYTE, _TWO, _FOUR, _VARINT, _STRING, _PAIR = 1, 2, 4, -1, -2, -3
_PROPERTY_KINDS = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _STRING, 0x08: _STRING, 0x09: _STRING, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _STRING, 0x13: _TWO, 0x15: _STRING, 0x16: _STRING, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _STRING, 0x1C: _STRING, 0x1F: _STRING, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE,
    0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip


def broker_target(mqtt_url: str, ca_pem: str) -> tuple[str, int, ssl.SSLContext | None]:
    """Host, port and TLS context of a device's broker URL (`mqtts://` is TLS, verified
    against `ca_pem`; a plain `mqtt://` URL gets no context)."""
    url = urlsplit(mqtt_url)
    secure = url.scheme in ("mqtts", "ssl")
    port = url.port or (8883 if secure else 1883)
    return url.hostname or "127.0.0.1", port, _tls_context(ca_pem) if secure else None


@functools.lru_cache(maxsize=8)
def _tls_context(ca_pem: str) -> ssl.SSLContext:
    """One context per CA, shared by every connection of the fleet."""
    return client_context(ca_pem)


class MqttError(GridshareError):
    """A refused connection (with the CONNACK reason code) or a protocol violation."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def connect_packet(
    client_id: str,
    username: str,
    password: str,
    keepalive: int,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    clean_start: bool = True,
    protocol: int = 5,
) -> bytes:
    flags = 0x80 | 0x40 | (0x02 if clean_start else 0)
    props = b"\x00" if protocol == 5 else b""
    payload = _string(client_id)
    if will_topic is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain
        payload += props + _string(will_topic) + _string(will_payload)
    payload += _string(username) + _string(password)
    header = _string("MQTT") + bytes([protocol, flags]) + struct.pack("!H", keepalive) + props
    return _packet(CONNECT, header + payload)


def publish_packet(
    topic: str,
    payload: bytes,
    packet_id: int,
    qos: int = 1,
    retain: bool = False,
    protocol: int = 5,
) -> bytes:
    first = PUBLISH | (qos << 1) | (1 if retain else 0)
    props = b"\x00" if protocol == 5 else b""
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + props + payload
    return _packet(first, body)


PINGREQ_PACKET = bytes([PINGREQ, 0])
DISCONNECT_PACKET = bytes([DISCONNECT, 0])


def parse_properties(data: bytes, offset: int) -> tuple[dict[int, object], int]:
    """Properties at `offset`: ({id: value}, offset after them)."""
    length, offset = _read_varint(data, offset)
    end, props = offset + length, {}
    while offset < end:
        prop = data[offset]
        kind = _PROPERTY_KINDS.get(prop)
        offset += 1
        if kind is None:
            raise MqttError(f"unknown property 0x{prop:02x}")
        if kind > 0:
            props[prop] = int.from_bytes(data[offset : offset + kind], "big")
            offset += kind
        elif kind == _VARINT:
            props[prop], offset = _read_varint(data, offset)
        else:
            for _ in range(2 if kind == _PAIR else 1):
                size = int.from_bytes(data[offset : offset + 2], "big")
                props[prop] = bytes(data[offset + 2 : offset + 2 + size])
                offset += 2 + size
    return props, end


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > 21:
            raise MqttError("malformed variable byte integer")


class MqttConnection(asyncio.Protocol):
    """One device's connection. The owner reacts to PUBACKs and loss through callbacks, which
    name the connection so that a late event of a replaced connection can be ignored."""

    def __init__(
        self,
        on_puback: Callable[[MqttConnection, int, int], None],
        on_lost: Callable[[MqttConnection, Exception | None], None],
        protocol: int = 5,
    ) -> None:
        self.on_puback = on_puback
        self.on_lost = on_lost
        self.protocol = protocol
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[dict[int, object]] = asyncio.get_running_loop().create_future()
        self.receive_maximum = 65535
        self.maximum_packet_size = 268_435_460  # MQTT's own limit unless the broker says less
        self.keepalive = 60
        self.last_sent = time.monotonic()
        self.closing = False
        self.link: object = None  # the owner's handle for this connection
        self._buffer = bytearray()

    # ----- asyncio.Protocol -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while self._one_packet():
                pass
        except (MqttError, IndexError) as exc:
            self._fail(MqttError(f"bad packet from broker: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.connack.done():
            self.connack.set_exception(exc or MqttError("connection closed before CONNACK"))
        self.on_lost(self, exc)

    # ----- sending -----

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.last_sent = time.monotonic()

    def start(self, connect: bytes, keepalive: int) -> None:
        self.keepalive = keepalive
        self.send(connect)

    def publish(self, topic: str, payload: bytes, packet_id: int, retain: bool = False) -> None:
        self.send(publish_packet(topic, payload, packet_id, 1, retain, self.protocol))

    def ping(self) -> None:
        self.send(PINGREQ_PACKET)

    def disconnect(self) -> None:
        """A clean DISCONNECT (the broker discards the will), then close."""
        self.closing = True
        self.send(DISCONNECT_PACKET)
        if self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Close abruptly, as a network failure would (the broker publishes the will)."""
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def connected(self) -> bool:
        return (
            self.transport is not None
            and self.connack.done()
            and not self.connack.exception()
            and not self.closing
        )

    # ----- receiving -----

    def _one_packet(self) -> bool:
        buffer = self._buffer
        if len(buffer) < 2:
            return False
        try:
            length, body_start = _read_varint(buffer, 1)
        except IndexError:
            return False
        end = body_start + length
        if len(buffer) < end:
            return False
        kind = buffer[0] & 0xF0
        body = bytes(buffer[body_start:end])
        del buffer[:end]
        if kind == PUBACK:
            self.on_puback(self, int.from_bytes(body[:2], "big"), body[2] if len(body) > 2 else 0)
        elif kind == CONNACK:
            self._connack(body)
        elif kind == DISCONNECT:
            reason = body[0] if body else 0
            self._fail(MqttError(f"broker sent DISCONNECT 0x{reason:02x}", reason))
        elif kind != PINGRESP:
            self._fail(MqttError(f"unexpected packet type 0x{kind:02x}"))
        return True

    def _connack(self, body: bytes) -> None:
        reason = body[1]
        if self.protocol != 5:  # 3.1.1: a return code, no properties
            if reason:
                self.connack.set_exception(MqttError(f"connection refused {reason}", 0x80))
            elif not self.connack.done():
                self.connack.set_result({})
            return
        if reason >= 0x80:
            self.connack.set_exception(MqttError(f"connection refused 0x{reason:02x}", reason))
            return
        props, _ = parse_properties(body, 2)
        self.receive_maximum = int(props.get(RECEIVE_MAXIMUM, 65535))  # type: ignore[arg-type]
        self.keepalive = int(props.get(SERVER_KEEP_ALIVE, self.keepalive))  # type: ignore[arg-type]
        self.maximum_packet_size = int(
            props.get(MAXIMUM_PACKET_SIZE, self.maximum_packet_size)  # type: ignore[arg-type]
        )
        if not self.connack.done():
            self.connack.set_result(props)

    def _fail(self, exc: MqttError) -> None:
        if not self.connack.done():
            self.connack.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()
