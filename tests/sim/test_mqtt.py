"""The simulator's MQTT 5 framing: packets it writes, CONNACK properties and PUBACKs it reads
(the fleet tests exercise the same code against the real broker)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from gridshare.sim.mqtt import (
    MqttConnection,
    MqttError,
    connect_packet,
    parse_properties,
    publish_packet,
    varint,
)


def test_varint_boundaries() -> None:
    assert varint(0) == b"\x00" and varint(127) == b"\x7f"
    assert varint(128) == b"\x80\x01" and varint(16_383) == b"\xff\x7f"
    assert varint(2_097_152) == b"\x80\x80\x80\x01"


def test_publish_packet_layout() -> None:
    packet = publish_packet("a/b", b"xyz", packet_id=258, qos=1, retain=True)
    assert packet == b"\x33" + bytes([2 + 3 + 2 + 1 + 3]) + b"\x00\x03a/b\x01\x02\x00xyz"


def test_connect_packet_carries_credentials_and_retained_will() -> None:
    packet = connect_packet("cp-1", "cp-1", "pw", 60, will_topic="w/t", will_payload=b"offline")
    assert packet[0] == 0x10
    body = packet[2:]
    assert body[:7] == b"\x00\x04MQTT\x05"
    flags = body[7]
    assert flags == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert struct.unpack("!H", body[8:10]) == (60,)
    assert body.endswith(b"\x00\x04cp-1\x00\x02pw")
    assert b"\x00\x03w/t\x00\x07offline" in body


def test_properties_are_parsed_and_unknown_ones_refused() -> None:
    props = (
        b"\x21\x00\x0a" + b"\x27\x00\x00\x03\xe8" + b"\x1f\x00\x02ok" + b"\x26\x00\x01k\x00\x01v"
    )
    parsed, end = parse_properties(varint(len(props)) + props, 0)
    assert parsed[0x21] == 10 and parsed[0x27] == 1000 and parsed[0x1F] == b"ok"
    assert end == 1 + len(props)
    with pytest.raises(MqttError):
        parse_properties(b"\x02\x7e\x00", 0)


def test_connack_and_pubacks_in_one_read() -> None:
    async def scenario() -> tuple[MqttConnection, list[tuple[int, int]]]:
        acks: list[tuple[int, int]] = []
        conn = MqttConnection(lambda c, pid, rc: acks.append((pid, rc)), lambda c, e: None)
        props = b"\x21\x00\x0a\x27\x00\x00\x03\xe8"
        connack = b"\x20" + bytes([2 + 1 + len(props)]) + b"\x00\x00" + bytes([len(props)]) + props
        pubacks = b"\x40\x02\x00\x01" + b"\x40\x04\x00\x02\x87\x00"
        data = connack + pubacks
        conn.data_received(data[:5])  # split packets arrive whole in the end
        conn.data_received(data[5:])
        await conn.connack
        return conn, acks

    conn, acks = asyncio.run(scenario())
    assert conn.receive_maximum == 10 and conn.maximum_packet_size == 1000
    assert acks == [(1, 0), (2, 0x87)]


def test_refused_connection_raises_with_reason() -> None:
    async def scenario() -> None:
        conn = MqttConnection(lambda c, pid, rc: None, lambda c, e: None)
        conn.data_received(b"\x20\x03\x00\x86\x00")
        await conn.connack

    with pytest.raises(MqttError) as caught:
        asyncio.run(scenario())
    assert caught.value.reason_code == 0x86
