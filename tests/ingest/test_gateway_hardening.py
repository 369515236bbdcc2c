"""The device gateway against a real broker, database and ingest worker: one identity per
connection, packet size cap, bounded quarantine under a flood, revocation within seconds."""

from __future__ import annotations

import os
import socket
import threading
import time

import paho.mqtt.client as mqtt
import psycopg

from gridshare.core.broker_auth import BrokerAuth
from gridshare.core.payloads import MAX_PAYLOAD_BYTES
from gridshare.core.settings import Settings
from gridshare.gateway.broker import connect_device, device_client, wait_for_login
from gridshare.gateway.provision import revoke
from gridshare.ingest.quarantine import QuarantinePolicy
from tests.ingest.fleet import Device, quarantined, register, stored, wait_until


class DeviceLink:
    """A device's own TLS connection (paho), with what the broker said about it."""

    def __init__(self, settings: Settings, device: Device, password: str, client_id: str = ""):
        self.connack: list[str] = []
        self.disconnects: list[str] = []
        self.acked = 0
        self.client = device_client(settings, device.device_id, password, client_id)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.append(str(rc))
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(str(rc))
        self.client.on_publish = lambda *_: self._ack()
        self._lock = threading.Lock()
        connect_device(settings, self.client)
        self.client.loop_start()
        wait_until(lambda: self.connack, 10, "CONNACK")

    def _ack(self) -> None:
        with self._lock:
            self.acked += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def with_login(settings: Settings, device: Device) -> str:
    password = f"pw-{os.urandom(8).hex()}"
    BrokerAuth(settings).add_users({device.device_id: password})
    wait_for_login(settings, device.device_id, password)
    return password


def service_listener_refuses(settings: Settings, device: Device, password: str, client_id: str):
    """CONNACK of a device login on the service listener (plain), with `client_id`."""
    outcome: list[str] = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.username_pw_set(device.device_id, password)
    client.on_connect = lambda c, u, f, rc, p: outcome.append(str(rc))
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    try:
        wait_until(lambda: outcome, 10, "CONNACK on the service listener")
    finally:
        client.loop_stop()
    return outcome[0]


def test_device_cannot_take_the_ingest_client_id(stack_settings, conn, ingest_worker):
    worker = ingest_worker()  # retires on stop: no session left to queue later tests' load
    ingest_id = f"gridshare-ingest-{socket.gethostname()}-{worker.worker}"
    device = register(conn, 1)[0]
    password = with_login(stack_settings, device)

    assert service_listener_refuses(stack_settings, device, password, ingest_id) == (
        "Not authorized"
    )
    link = DeviceLink(stack_settings, device, password, client_id=ingest_id)
    try:
        assert link.connack == ["Success"]
        for seq in (1, 2, 3):
            link.client.publish(device.topic, device.reading(seq), qos=1)
        wait_until(lambda: stored(conn, [device]) == (3, 3), 30, "readings stored")
    finally:
        link.close()
    assert worker.alive()
    assert "disconnected from broker" not in worker.log()


def test_oversized_packet_is_refused_by_the_broker(stack_settings, conn, ingest_worker):
    ingest_worker()
    device = register(conn, 1)[0]
    link = DeviceLink(stack_settings, device, with_login(stack_settings, device))
    try:
        link.client.reconnect_delay_set(30, 60)  # stay away once thrown out
        link.client.publish(device.topic, os.urandom(MAX_PAYLOAD_BYTES + 4096), qos=1)
        wait_until(lambda: link.disconnects, 10, "disconnect")
        assert link.disconnects[0] == "Packet too large"
    finally:
        link.close()
    time.sleep(1)
    assert quarantined(conn, device.device_id) == []


def test_flood_of_bad_messages_is_bounded_while_others_are_stored(
    stack_settings, conn, ingest_worker, publisher
):
    """10,000 bad 16 KiB messages from one device: quarantine grows by at most the cap, and
    the other devices' readings keep being stored meanwhile."""
    ingest_worker()
    flooder, *others = register(conn, 6)
    link = DeviceLink(stack_settings, flooder, with_login(stack_settings, flooder))
    size_before = quarantine_bytes(conn)
    started = time.monotonic()
    bad = b"{" + os.urandom(MAX_PAYLOAD_BYTES - 1)
    try:
        for index in range(10_000):
            link.client.publish(flooder.topic, bad, qos=1)
            if index % 500 == 0:  # the others go on meanwhile
                seq = index // 500 + 1
                for device in others:
                    publisher.publish(device.topic, device.reading(seq))
        wait_until(lambda: link.acked == 10_000, 300, "flood acknowledged by the broker")
        publisher.flush()
        wait_until(lambda: stored(conn, others) == (100, 100), 120, "others' readings")
        wait_until(lambda: quarantined(conn, flooder.device_id), 60, "flood reached ingest")
        wait_until(lambda: settled(conn, flooder), 300, "flood processed")
    finally:
        link.close()
    elapsed = time.monotonic() - started
    policy = QuarantinePolicy()
    cap_rows = policy.burst + int(policy.per_minute * elapsed / 60) + 1
    rows = conn.execute(
        "SELECT count(*), coalesce(max(octet_length(payload)), 0), min(payload_bytes),"
        " count(DISTINCT payload_sha256) FROM quarantine WHERE device_id = %s",
        (flooder.device_id,),
    ).fetchone()
    assert 1 <= rows[0] <= cap_rows
    assert rows[1] == policy.payload_bytes and rows[2] == MAX_PAYLOAD_BYTES and rows[3] == 1
    assert quarantine_bytes(conn) - size_before < 4 * 1024 * 1024  # whole: 160 MiB


def quarantine_bytes(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_total_relation_size('quarantine')").fetchone()[0]


def settled(conn: psycopg.Connection, device: Device) -> bool:
    """True once nothing new was quarantined for the device for two seconds."""
    first = len(quarantined(conn, device.device_id))
    time.sleep(2)
    return len(quarantined(conn, device.device_id)) == first


def test_revoked_device_is_refused_within_seconds(stack_settings, conn, ingest_worker, publisher):
    ingest_worker()
    device = register(conn, 1)[0]
    password = with_login(stack_settings, device)
    link = DeviceLink(stack_settings, device, password)
    try:
        link.client.publish(device.topic, device.reading(1), qos=1)
        wait_until(lambda: stored(conn, [device]) == (1, 1), 30, "first reading")
        link.client.reconnect_delay_set(30, 60)
        revoke(stack_settings, device.device_id)
        wait_until(lambda: link.disconnects, 10, "session ended by the broker")
    finally:
        link.close()
    assert try_login(stack_settings, device, password) == "Not authorized"
    # a message under its id (here through the admin account) is refused within seconds
    revoked_at = time.monotonic()
    publisher.publish(device.topic, device.reading(2))
    publisher.flush()
    rows = wait_until(lambda: quarantined(conn, device.device_id), 10, "refused message")
    assert time.monotonic() - revoked_at < 10
    assert [r[0] for r in rows] == ["unknown_device"]
    assert stored(conn, [device]) == (1, 1)
    assert conn.execute(
        "SELECT active FROM devices WHERE device_id = %s", (device.device_id,)
    ).fetchone() == (False,)


def try_login(settings: Settings, device: Device, password: str) -> str:
    link = DeviceLink(settings, device, password)
    link.close()
    return link.connack[0]
