"""Pure logic of the clustered broker: where the nodes are, what a device may publish, and
the simulator's MQTT 3.1.1 packets."""

from __future__ import annotations

import re
from pathlib import Path

from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.gateway.cluster_auth import device_permissions
from gridshare.sim.mqtt import connect_packet, publish_packet


def test_no_cluster_unless_asked(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert not cluster.enabled(settings)
    assert cluster.mqtt_endpoints(settings) == [] and cluster.amqp_urls(settings) == []


def test_recorded_cluster_is_found_by_later_commands(tmp_path: Path) -> None:
    cluster.record(Settings(state_dir=tmp_path, cluster_port=21000), 3)
    later = Settings(state_dir=tmp_path)  # no GRIDSHARE_CLUSTER: the record decides
    assert cluster.enabled(later)
    assert cluster.mqtt_endpoints(later) == [("127.0.0.1", p) for p in (21000, 21001, 21002)]
    assert [u.rsplit("@", 1)[1] for u in cluster.amqp_urls(later)] == [
        f"127.0.0.1:{p}/%2F" for p in (21010, 21011, 21012)
    ]
    cluster.record(later, 0)
    assert not cluster.enabled(Settings(state_dir=tmp_path))


def test_remote_cluster_from_device_urls(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path, cluster_mqtt_urls="mqtt://broker-1:1883, mqtt://broker-2:1883"
    )
    assert cluster.mqtt_endpoints(settings) == [("broker-1", 1883), ("broker-2", 1883)]
    urls = cluster.amqp_urls(settings)
    assert [u.split("@")[1] for u in urls] == ["broker-1:5672/%2F", "broker-2:5672/%2F"]
    assert all(u.startswith("amqp://gridshare-ingest:") for u in urls)


def test_device_may_publish_only_its_own_topics() -> None:
    _, topic = device_permissions("cp-000042")
    allowed = re.compile(topic["write"])
    assert allowed.match("gridshare.v1.devices.cp-000042.telemetry")
    assert allowed.match("gridshare.v1.devices.cp-000042.status")
    for forged in (
        "gridshare.v1.devices.cp-000043.telemetry",
        "gridshare.v1.devices.cp-000042.telemetry.x",
        "gridshare.v1.devices.cp-0000421.telemetry",
        "gridshare.v1.devices.*.telemetry",
    ):
        assert not allowed.match(forged), forged


def test_mqtt_311_packets_carry_no_properties() -> None:
    v5 = connect_packet("cp-1", "cp-1", "pw", 60, will_topic="w/t", will_payload=b"offline")
    v311 = connect_packet(
        "cp-1", "cp-1", "pw", 60, will_topic="w/t", will_payload=b"offline", protocol=4
    )
    assert v311[2:9] == b"\x00\x04MQTT\x04" and len(v5) - len(v311) == 2
    assert publish_packet("a/b", b"xyz", 7, protocol=4) == b"\x32\x0a\x00\x03a/b\x00\x07xyz"
