"""Provisioning against the real stack: keys, rows, broker logins, chain, idempotence, ACL,
reload without restart, key rotation, ephemeral devices."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from gridshare.core import chain
from gridshare.core.broker_auth import BrokerAuth
from gridshare.core.ids import hex_id, text_id
from gridshare.core.payloads import DeviceType
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key
from gridshare.gateway.broker import connect_device, device_client, login_accepted
from gridshare.gateway.identity import identity_path, read_identity
from gridshare.gateway.provision import (
    planned_pools,
    provision,
    provision_ephemeral,
    rotate_key,
)


def test_pools_cycle_through_the_three_types() -> None:
    assert [name for name, _ in planned_pools(5)] == [
        "charging-pile-1",
        "pv-plant-1",
        "battery-swap-1",
        "charging-pile-2",
        "pv-plant-2",
    ]
    assert planned_pools(2, DeviceType.PV_PLANT) == [
        ("pv-plant-1", DeviceType.PV_PLANT),
        ("pv-plant-2", DeviceType.PV_PLANT),
    ]


@pytest.fixture(scope="module")
def provisioned(deployed: Settings) -> Settings:
    provision(deployed, pools=3, per_pool=4)
    return deployed


def devices_of(conn: psycopg.Connection, pool: str) -> list[tuple]:
    return conn.execute(
        "SELECT device_id, type, address, registered_tx FROM devices WHERE pool = %s"
        " ORDER BY device_id",
        (pool,),
    ).fetchall()


def test_provision_creates_keys_rows_logins_and_chain_records(
    provisioned: Settings, conn: psycopg.Connection
) -> None:
    settings = provisioned
    pools = conn.execute(
        "SELECT name, pool_id, device_type, share_bps, token_address, token_symbol FROM pools"
        " WHERE name IN ('charging-pile-1', 'pv-plant-1', 'battery-swap-1') ORDER BY name"
    ).fetchall()
    assert [p[0] for p in pools] == ["battery-swap-1", "charging-pile-1", "pv-plant-1"]
    record = chain.read_deployment(settings)
    client = chain.ChainClient(settings)
    registry = client.contract("DeviceRegistry", record.address("DeviceRegistry"))
    for name, pid, device_type, share_bps, token, symbol in pools:
        assert pid == hex_id(name)
        assert share_bps == settings.pool_share_bps == 7000
        assert token and client.has_code(token) and symbol.startswith("GS")
        on_record = record.pools[name]
        assert (on_record.token, on_record.share_bps, on_record.device_type) == (
            token,
            share_bps,
            device_type,
        )
    rows = devices_of(conn, "charging-pile-1")
    assert [r[0] for r in rows] == ["cp-000001", "cp-000002", "cp-000003", "cp-000004"]
    logins = BrokerAuth(settings).usernames()
    for device_id, device_type, address, registered_tx in rows:
        path = identity_path(settings, device_id)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        data = json.loads(path.read_text())
        assert set(data) == {
            "device_id", "type", "pool", "address", "private_key", "mqtt_username",
            "mqtt_password", "mqtt_url", "ca",
        }  # fmt: skip
        assert data["mqtt_url"] == settings.mqtt_device_url
        assert data["ca"].startswith("-----BEGIN CERTIFICATE-----")
        assert data["mqtt_username"] == device_id and len(data["mqtt_password"]) >= 16
        assert data["type"] == device_type == "charging_pile"
        assert address_for_key(bytes.fromhex(data["private_key"][2:])) == address
        assert device_id in logins
        assert registered_tx and registered_tx.startswith("0x")
        signer, on_chain_pool, active = client.call(registry.functions.device(text_id(device_id)))
        assert (signer, "0x" + on_chain_pool.hex(), active) == (
            address,
            hex_id("charging-pile-1"),
            True,
        )
    assert stat.S_IMODE(os.stat(identity_path(settings, "cp-000001").parent).st_mode) == 0o700
    device = read_identity(settings, "pv-000002")
    assert device is not None
    assert login_accepted(settings, device.mqtt_username, device.mqtt_password)
    assert not login_accepted(settings, device.mqtt_username, "wrong-password")


def test_provisioning_twice_duplicates_nothing_and_extends_pools(
    provisioned: Settings, conn: psycopg.Connection
) -> None:
    settings = provisioned
    before = conn.execute("SELECT count(*) FROM devices WHERE NOT ephemeral").fetchone()[0]
    again = provision(settings, pools=3, per_pool=4)
    assert again.pools_created == [] and again.devices_created == []
    assert again.broker_logins_added == 0 and again.chain.devices_registered_now == 0
    assert conn.execute("SELECT count(*) FROM devices WHERE NOT ephemeral").fetchone()[0] == before

    grown = provision(settings, pools=4, per_pool=5)
    assert grown.pools_created == ["charging-pile-2"]
    assert grown.devices_created == [
        "cp-000005", "pv-000005", "bs-000005",
        "cp-000006", "cp-000007", "cp-000008", "cp-000009", "cp-000010",
    ]  # fmt: skip
    assert [r[0] for r in devices_of(conn, "charging-pile-2")] == grown.devices_created[3:]
    assert grown.chain.devices_registered_now == 8
    assert len(devices_of(conn, "charging-pile-1")) == 5
    assert (
        conn.execute("SELECT count(*) FROM pools WHERE name = 'charging-pile-2'").fetchone()[0] == 1
    )


def test_new_device_logs_in_right_after_provisioning_while_broker_keeps_running(
    provisioned: Settings, conn: psycopg.Connection
) -> None:
    settings = provisioned
    broker_pid = int(BrokerAuth(settings).pid_file.read_text())
    result = provision(settings, pools=1, per_pool=7, chain=False)
    assert len(result.devices_created) == 2
    for device_id in result.devices_created:
        device = read_identity(settings, device_id)
        assert login_accepted(settings, device.mqtt_username, device.mqtt_password)
    assert int(BrokerAuth(settings).pid_file.read_text()) == broker_pid
    os.kill(broker_pid, 0)
    unregistered = conn.execute(
        "SELECT count(*) FROM devices WHERE pool = 'charging-pile-1' AND registered_tx IS NULL"
    ).fetchone()[0]
    assert unregistered == 2
    provision(settings, pools=1, per_pool=7)  # the chain step completes what was skipped
    assert devices_of(conn, "charging-pile-1")[-1][3] is not None


def publish_as(settings: Settings, username: str, password: str, topic: str) -> int:
    """Publish QoS 1 with MQTT 5 and return the PUBACK reason code."""
    acked = threading.Event()
    outcome: dict[str, int] = {}
    client = device_client(settings, username, password)

    def on_publish(client, userdata, mid, reason_code, properties):
        outcome["rc"] = reason_code.value
        acked.set()

    client.on_publish = on_publish
    connect_device(settings, client)
    client.loop_start()
    try:
        client.publish(topic, b'{"forged": true}', qos=1)
        assert acked.wait(10)
        return outcome["rc"]
    finally:
        client.disconnect()
        client.loop_stop()


def test_device_credentials_cannot_publish_as_another_device(
    provisioned: Settings, observer_factory
) -> None:
    settings = provisioned
    observer = observer_factory(["gridshare/v1/devices/+/telemetry"])
    attacker = read_identity(settings, "cp-000001")
    victim_topic = "gridshare/v1/devices/cp-000002/telemetry"
    refused = publish_as(settings, attacker.mqtt_username, attacker.mqtt_password, victim_topic)
    assert refused == 0x87  # MQTT 5: not authorized
    own_topic = "gridshare/v1/devices/cp-000001/telemetry"
    assert publish_as(settings, attacker.mqtt_username, attacker.mqtt_password, own_topic) == 0
    assert observer.wait_for(lambda: observer.received("cp-000001/"))
    time.sleep(0.3)
    assert observer.received("cp-000002/") == []


def test_rotate_key_updates_chain_database_and_file(
    provisioned: Settings, conn: psycopg.Connection
) -> None:
    settings = provisioned
    before = read_identity(settings, "bs-000001")
    rotated = rotate_key(settings, "bs-000001")
    assert rotated.address != before.address
    assert rotated.mqtt_password != before.mqtt_password
    assert login_accepted(settings, rotated.mqtt_username, rotated.mqtt_password)
    assert not login_accepted(settings, before.mqtt_username, before.mqtt_password)
    assert read_identity(settings, "bs-000001") == rotated
    assert stat.S_IMODE(os.stat(identity_path(settings, "bs-000001")).st_mode) == 0o600
    assert not identity_path(settings, "bs-000001").with_suffix(".json.new").exists()
    assert conn.execute("SELECT address FROM devices WHERE device_id = 'bs-000001'").fetchone() == (
        rotated.address,
    )
    record = chain.read_deployment(settings)
    client = chain.ChainClient(settings)
    registry = client.contract("DeviceRegistry", record.address("DeviceRegistry"))
    signer, _, _ = client.call(registry.functions.device(text_id("bs-000001")))
    assert signer == rotated.address


def test_ephemeral_devices_have_rows_and_logins_but_no_files(
    stack_settings: Settings, conn: psycopg.Connection
) -> None:
    identities = provision_ephemeral(stack_settings, 5, tag="t0ephm")
    assert [i.device_id for i in identities] == [
        "cp-et0ephm-000001", "pv-et0ephm-000002", "bs-et0ephm-000003", "cp-et0ephm-000004",
        "pv-et0ephm-000005",
    ]  # fmt: skip
    rows = conn.execute(
        "SELECT d.device_id, d.pool, d.ephemeral, p.ephemeral FROM devices d"
        " JOIN pools p ON p.name = d.pool WHERE d.device_id LIKE '%%-et0ephm-%%'"
    ).fetchall()
    assert len(rows) == 5 and all(r[2] and r[3] for r in rows)
    pools = {"charging-pile-ephemeral", "pv-plant-ephemeral", "battery-swap-ephemeral"}
    assert {r[1] for r in rows} == pools
    assert all(not identity_path(stack_settings, i.device_id).exists() for i in identities)
    assert login_accepted(stack_settings, identities[0].mqtt_username, identities[0].mqtt_password)


def test_cli_provision_and_rotate_key(provisioned: Settings, stack_env: dict[str, str]) -> None:
    gridshare = str(Path(sys.executable).with_name("gridshare"))
    again = subprocess.run(
        [gridshare, "devices", "provision", "--pools", "3", "--per-pool", "4"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "pools: 3 (0 new); devices:" in again.stdout and "(0 new, 0 broker" in again.stdout
    unknown = subprocess.run(
        [gridshare, "devices", "rotate-key", "cp-999999"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1].startswith("gridshare: device cp-999999")


def test_rated_power_and_max_tariff_recorded_at_provisioning(
    provisioned: Settings, conn: psycopg.Connection
) -> None:
    """Given values for what a run creates; each type's default otherwise."""
    result = provision(
        provisioned,
        pools=2,
        per_pool=5,
        device_type=DeviceType.PV_PLANT,
        rated_power_w=42_000,
        max_tariff_minor_per_kwh=450,
    )
    assert "pv-plant-2" in result.pools_created
    rated = dict(conn.execute("SELECT device_id, rated_power_w FROM devices"))
    assert {rated[d] for d in result.devices_created} == {42_000}
    assert (rated["cp-000001"], rated["pv-000001"], rated["bs-000001"]) == (
        150_000,
        1_000_000,
        20_000,
    )
    tariffs = dict(conn.execute("SELECT name, max_tariff_minor_per_kwh FROM pools"))
    assert (tariffs["pv-plant-2"], tariffs["pv-plant-1"], tariffs["charging-pile-1"]) == (
        450,
        500,
        1000,
    )
