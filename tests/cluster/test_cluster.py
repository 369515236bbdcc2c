"""The clustered broker with real nodes on loopback: a node killed while devices publish, a
worker killed while it holds messages, a worker added mid-stream, and per-device permissions
on every node. Devices are the simulator's; workers are `gridshare ingest` processes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridshare.core import db, stack
from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.core.stack.cluster import QUEUE, Cluster
from gridshare.gateway.identity import DeviceIdentity, load_identities
from gridshare.sim.fleet import Fleet, read_acked
from tests.cluster.conftest import Workers

pytestmark = pytest.mark.slow

INTERVAL = 60  # sim seconds between a device's readings
SPEED = 240  # so each device publishes every 0.25 s of wall time
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
_clock = {"next": START.timestamp()}


def run_fleet(settings: Settings, seconds: float, during: Callable[[Fleet], None]) -> Fleet:
    """Publish from every provisioned device for `seconds` of wall time; `during` runs
    alongside; device time continues where the previous run ended."""
    fleet = Fleet(
        settings,
        load_identities(settings),
        seed=5,
        speed=SPEED,
        interval=INTERVAL,
        start=_clock["next"],
        resume=True,
    )
    _clock["next"] += seconds * SPEED + 2 * INTERVAL
    runner = threading.Thread(target=fleet.run, args=(seconds * SPEED,))
    runner.start()
    try:
        during(fleet)
    finally:
        runner.join()
    return fleet


def acked(fleet: Fleet) -> set[tuple[str, int]]:
    return set(read_acked(Path(fleet.stats.acked_path), kinds={"reading"}))


def stored(settings: Settings) -> list[tuple[str, int]]:
    with db.connect(settings) as conn:
        return [(r[0], int(r[1])) for r in conn.execute("SELECT device_id, seq FROM telemetry")]


def wait_stored(settings: Settings, wanted: set[tuple[str, int]], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not wanted <= set(stored(settings)):
        time.sleep(1.0)


def assert_exactly_once(settings: Settings, wanted: set[tuple[str, int]]) -> None:
    rows = stored(settings)
    assert len(rows) == len(set(rows)), "a reading is stored twice"
    missing = wanted - set(rows)
    assert not missing, f"{len(missing)} acknowledged readings not stored: {sorted(missing)[:5]}"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def unacknowledged(settings: Settings) -> int:
    local = Cluster(settings, cluster.layout(settings))
    rows = json.loads(local.ctl("list_queues", "name", "messages_unacknowledged", "-q",
                                "--formatter", "json"))  # fmt: skip
    return sum(int(r["messages_unacknowledged"]) for r in rows if r["name"] == QUEUE)


def test_killed_node_loses_no_acknowledged_reading(
    cluster_settings: Settings, workers: Workers
) -> None:
    workers.start("node-kill-1")
    workers.start("node-kill-2")
    victim = Cluster(cluster_settings, cluster.layout(cluster_settings)).nodes[1]

    def kill_node(fleet: Fleet) -> None:
        wait_for(lambda: fleet.stats.acked_readings > 200, 60, "readings before the kill")
        pid = victim.process.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    fleet = run_fleet(cluster_settings, 40, kill_node)
    wanted = acked(fleet)
    wait_stored(cluster_settings, wanted)
    assert_exactly_once(cluster_settings, wanted)
    on_victim = len(fleet.links[1 :: cluster.layout(cluster_settings).nodes])
    assert fleet.stats.reconnects >= on_victim, fleet.stats.summary()
    assert len(wanted) > 1000
    assert victim.up()  # back for the following tests; it catches up from the others


def test_killed_workers_messages_go_to_the_other(
    cluster_settings: Settings, workers: Workers
) -> None:
    # This worker waits a minute to fill a batch, so it holds its share unacknowledged.
    slow = workers.start(
        "hoarder", GRIDSHARE_INGEST_BATCH_SIZE="10000", GRIDSHARE_INGEST_BATCH_SECONDS="60"
    )
    workers.start("survivor")
    fleet = run_fleet(cluster_settings, 10, lambda fleet: None)
    wanted = acked(fleet)
    wait_for(lambda: unacknowledged(cluster_settings) > 0, 30, "the hoarder's share")
    held = unacknowledged(cluster_settings)
    pid = slow.pid()
    assert pid is not None and workers.stored("hoarder") == 0
    os.kill(pid, signal.SIGKILL)
    wait_stored(cluster_settings, wanted)
    assert_exactly_once(cluster_settings, wanted)
    assert workers.stored("survivor") >= len(wanted) and held > 0


def test_added_worker_takes_a_share(cluster_settings: Settings, workers: Workers) -> None:
    names = ("spread-1", "spread-2", "spread-3")
    workers.start(names[0])
    workers.start(names[1])
    joined: dict[str, int] = {}

    def add_third(fleet: Fleet) -> None:
        time.sleep(5)
        workers.start(names[2])
        joined.update({name: workers.stored(name) for name in names})

    fleet = run_fleet(cluster_settings, 40, add_third)
    wanted = acked(fleet)
    wait_stored(cluster_settings, wanted)
    assert_exactly_once(cluster_settings, wanted)
    since = {name: workers.stored(name) - joined[name] for name in names}
    assert sum(workers.stored(name) for name in names) >= len(wanted)
    # from its start on, the third worker gets about a third (round robin among consumers)
    assert all(share > 0.2 * sum(since.values()) for share in since.values()), since


def publish(
    endpoint: tuple[str, int], device: DeviceIdentity, topic: str, payload: bytes
) -> dict[str, object]:
    """One QoS 1 publish over MQTT 3.1.1; what came back (connack, puback, disconnect)."""
    seen: dict[str, object] = {}
    done = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=device.mqtt_username, protocol=mqtt.MQTTv311
    )
    client.username_pw_set(device.mqtt_username, device.mqtt_password)
    client.on_connect = lambda c, u, f, rc, p: seen.setdefault("connack", str(rc))
    client.on_publish = lambda c, u, mid, rc, p: (seen.setdefault("puback", mid), done.set())
    client.on_disconnect = lambda c, u, f, rc, p: (seen.setdefault("closed", str(rc)), done.set())
    client.connect(*endpoint, keepalive=10)
    client.loop_start()
    try:
        wait_for(lambda: "connack" in seen or "closed" in seen, 10, "CONNACK")
        client.publish(topic, payload, qos=1)
        done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return seen


def test_device_publishes_only_under_its_own_id_on_every_node(
    cluster_settings: Settings,
) -> None:
    device, other = load_identities(cluster_settings)[:2]
    for endpoint in cluster.mqtt_endpoints(cluster_settings):
        own = publish(endpoint, device, f"gridshare/v1/devices/{device.device_id}/status", b"x")
        assert "puback" in own, (endpoint, own)
        forged = f"gridshare/v1/devices/{other.device_id}/telemetry"
        refused = publish(endpoint, device, forged, b"{}")
        assert "puback" not in refused and "closed" in refused, (endpoint, refused)


def test_stack_reports_and_keeps_the_cluster(cluster_settings: Settings) -> None:
    """`stack up` again is a no-op; `stack status` has a healthy line per node; commands on
    the same state dir without GRIDSHARE_CLUSTER find the cluster from its record."""
    assert stack.up(cluster_settings) == {"postgres": False, "cluster": False, "anvil": False}
    states = stack.status(cluster_settings)
    assert all(states[f"broker-{i}"].endswith("healthy") for i in (1, 2, 3)), states
    later = Settings(state_dir=cluster_settings.state_path)
    assert cluster.mqtt_endpoints(later) == cluster.mqtt_endpoints(cluster_settings)
