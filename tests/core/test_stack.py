"""The local stack's lifecycle: up, idempotent up, status, down, persistence, side by side."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gridshare.core import stack
from gridshare.core.broker_auth import ADMIN_USER, BrokerAuth
from gridshare.core.settings import Settings
from gridshare.core.stack.process import port_open
from tests.support import admin_url, database_url, stack_settings_for

GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))


def ports(settings: Settings) -> list[int]:
    return [settings.db_port, settings.mqtt_port, settings.rpc_port]


def rpc(settings: Settings, method: str, params: list | None = None) -> object:
    reply = httpx.post(
        settings.rpc_url,
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
        timeout=5,
    )
    return reply.json()["result"]


@pytest.fixture
def private_stack(tmp_path: Path):
    settings = stack_settings_for(tmp_path / "state")
    yield settings
    stack.down(settings)


def test_up_is_idempotent_and_down_frees_everything(private_stack: Settings) -> None:
    settings = private_stack
    assert stack.up(settings) == {"postgres": True, "mosquitto": True, "anvil": True}
    pids = {s.name: s.process.pid() for s in stack.services(settings)}
    assert all(pids.values())
    assert stack.up(settings) == {"postgres": False, "mosquitto": False, "anvil": False}
    assert {s.name: s.process.pid() for s in stack.services(settings)} == pids

    status = stack.status(settings)
    assert list(status) == ["postgres", "mosquitto", "anvil", "schema"]
    services = [status[name] for name in ("postgres", "mosquitto", "anvil")]
    assert all(line.startswith("running") and "healthy" in line for line in services)
    assert status["schema"] == "not migrated"

    assert stack.down(settings) == {"anvil": True, "mosquitto": True, "postgres": True}
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert not any(port_open("127.0.0.1", p) for p in ports(settings))
    after = stack.status(settings)
    assert [after[name] for name in ("postgres", "mosquitto", "anvil")] == ["stopped"] * 3
    assert after["schema"].startswith("unknown (database unreachable")
    assert stack.down(settings) == {"anvil": False, "mosquitto": False, "postgres": False}


def test_external_database_is_left_to_its_owner(
    stack_settings: Settings, private_stack: Settings
) -> None:
    """GRIDSHARE_DB_EXTERNAL: `stack up` runs only the broker and the chain and migrates the
    database it is given; `stack down` leaves that database running."""
    name = f"ext_{uuid.uuid4().hex[:8]}"
    admin = admin_url(stack_settings)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{urlsplit(stack_settings.db_url).username}"')
    external = private_stack.model_copy(
        update={
            "db_url": database_url(stack_settings, name),
            "db_external": True,
        }
    )
    env = {**os.environ, **external.as_env()}
    up = subprocess.run([GRIDSHARE, "stack", "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    assert "postgres" not in up.stdout and "migration(s) applied" in up.stdout
    status = subprocess.run([GRIDSHARE, "stack", "status"], env=env, capture_output=True, text=True)
    assert "external" in status.stdout
    assert "timescaledb (" in status.stdout or "postgresql" in status.stdout
    with psycopg.connect(external.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0
    assert stack.down(external) == {"anvil": True, "mosquitto": True}
    with psycopg.connect(external.db_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_two_stacks_side_by_side(stack_settings: Settings, private_stack: Settings) -> None:
    stack.up(private_stack)
    for settings in (stack_settings, private_stack):
        with psycopg.connect(settings.db_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert int(rpc(settings, "eth_chainId"), 16) == 31337
    assert set(ports(stack_settings)).isdisjoint(ports(private_stack))


def test_chain_and_database_survive_restart(private_stack: Settings) -> None:
    settings = private_stack
    stack.up(settings)
    accounts = rpc(settings, "eth_accounts")
    rpc(settings, "eth_sendTransaction", [{"from": accounts[0], "to": accounts[1], "value": "0x1"}])
    block = int(rpc(settings, "eth_blockNumber"), 16)
    with psycopg.connect(settings.db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE survives (x int)")
    stack.down(settings)
    stack.up(settings)
    assert int(rpc(settings, "eth_blockNumber"), 16) == block
    with psycopg.connect(settings.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM survives").fetchone() == (0,)


def test_qos1_session_survives_broker_restart(private_stack: Settings) -> None:
    """A persistent session's queued QoS 1 message is delivered after the broker restarts."""
    settings = private_stack
    stack.up(settings)
    password = BrokerAuth(settings).service_accounts()[ADMIN_USER]
    received: list[bytes] = []

    def client(client_id: str) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(ADMIN_USER, password)
        return c

    def connect_subscriber() -> mqtt.Client:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        sub = client("persistent-sub")
        sub.on_message = lambda _c, _u, msg: received.append(msg.payload)
        sub.connect(settings.mqtt_host, settings.mqtt_port, clean_start=False, properties=props)
        sub.loop_start()
        return sub

    subscribed = threading.Event()
    sub = connect_subscriber()
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.subscribe("t/persist", qos=1)
    assert subscribed.wait(10)
    sub.disconnect()
    sub.loop_stop()

    pub = client("publisher")
    pub.connect(settings.mqtt_host, settings.mqtt_port)
    pub.loop_start()
    pub.publish("t/persist", b"kept", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    time.sleep(0.2)

    mosquitto = stack.Mosquitto(settings)
    mosquitto.down()
    mosquitto.up()

    sub = connect_subscriber()
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
    sub.disconnect()
    sub.loop_stop()
    assert received == [b"kept"]


def test_anonymous_login_refused(stack_settings: Settings) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    codes: list[object] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc)
    c.connect(stack_settings.mqtt_host, stack_settings.mqtt_port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    assert codes and codes[0].is_failure
