"""The fleet against the real broker: PUBACK accounting, last will and retained status,
buffering and replay across disconnects, determinism on the wire, resume, SIGTERM, scale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from gridshare.core import stack
from gridshare.core.errors import PayloadError
from gridshare.core.payloads import parse_telemetry
from gridshare.core.settings import Settings
from gridshare.gateway.provision import provision_ephemeral
from gridshare.sim.faults import FaultPlan
from gridshare.sim.fleet import Fleet, read_acked

START = datetime(2026, 6, 1, tzinfo=UTC)
GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))
TOPICS = ["gridshare/v1/devices/+/telemetry", "gridshare/v1/devices/+/status"]


def valid_readings(observer, device_ids: set[str]) -> dict[str, list[int]]:
    """Seqs of the parseable readings the observer got, per device, in arrival order."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for _, payload, _ in observer.received("/telemetry"):
        try:
            reading, _ = parse_telemetry(payload)
        except PayloadError:
            continue
        if reading.device_id in device_ids:
            seqs[reading.device_id].append(reading.seq)
    return seqs


def test_every_acknowledged_reading_reached_the_broker_with_faults(
    stack_settings: Settings, observer_factory
) -> None:
    devices = provision_ephemeral(stack_settings, 6)
    ids = {d.device_id for d in devices}
    observer = observer_factory(
        ["gridshare/v1/devices/+/telemetry", "gridshare/v1/devices/+/status"]
    )
    fleet = Fleet(
        stack_settings,
        devices,
        seed=5,
        speed=7200,
        start=START,
        faults=FaultPlan.parse("all", 0.05),
        resume=False,
    )
    stats = fleet.run(8 * 3600)
    assert stats.in_flight == 0 and stats.buffered == 0 and stats.refused == 0
    assert stats.acked == stats.generated
    assert set(stats.faults) == {
        "disconnect", "duplicate", "reorder", "skew", "garbage", "badsig", "reset",
    }  # fmt: skip
    acked = fleet.acked_readings()
    assert len(acked) == stats.acked_readings == len(set(acked))
    assert observer.wait_for(lambda: len(observer.received("/telemetry")) >= stats.acked)
    received = valid_readings(observer, ids)
    for device_id, seq in acked:
        assert seq in received[device_id]
    statuses = defaultdict(list)
    for topic, payload, _ in observer.received("/status"):
        statuses[topic.split("/")[3]].append(payload)
    for device_id in ids:
        assert statuses[device_id][0] == b"online" and statuses[device_id][-1] == b"offline"
    went_away = [
        link.device.identity.device_id
        for link in fleet.links
        if link.device.fault_counts.get("disconnect")
    ]
    assert went_away
    for device_id in went_away:  # the will while away, and the final clean `offline`
        assert statuses[device_id].count(b"offline") >= 2


def test_disconnects_buffer_and_replay_in_seq_order_without_loss(
    stack_settings: Settings, observer_factory
) -> None:
    devices = provision_ephemeral(stack_settings, 4)
    ids = {d.device_id for d in devices}
    observer = observer_factory(
        ["gridshare/v1/devices/+/telemetry", "gridshare/v1/devices/+/status"]
    )
    fleet = Fleet(
        stack_settings,
        devices,
        seed=9,
        speed=3600,
        start=START,
        faults=FaultPlan.parse("disconnect:0.1"),
        resume=False,
    )
    stats = fleet.run(10 * 3600)
    assert stats.faults["disconnect"] >= 3 and stats.connects > len(devices)
    assert observer.wait_for(lambda: len(observer.received("/telemetry")) >= stats.acked)
    received = valid_readings(observer, ids)
    for link in fleet.links:
        device_id = link.device.identity.device_id
        seqs = received[device_id]
        assert set(seqs) == set(range(1, link.device.seq + 1))  # nothing lost
        first_seen = [s for i, s in enumerate(seqs) if s not in seqs[:i]]
        assert first_seen == sorted(first_seen)  # replayed in order
        statuses = [p for t, p, _ in observer.received(f"/{device_id}/status")]
        if link.device.fault_counts.get("disconnect"):
            # the will: `offline` published by the broker while the device was away
            assert statuses.count(b"offline") >= 2


def test_same_seed_same_messages_on_the_wire(stack_settings: Settings, observer_factory) -> None:
    devices = provision_ephemeral(stack_settings, 3)
    ids = {d.device_id for d in devices}
    runs = []
    for _ in range(2):
        observer = observer_factory(["gridshare/v1/devices/+/telemetry"])
        fleet = Fleet(stack_settings, devices, seed=21, speed=7200, start=START, resume=False)
        stats = fleet.run(4 * 3600)
        assert observer.wait_for(lambda o=observer, s=stats: len(o.received()) >= s.acked)
        per_device = defaultdict(list)
        for topic, payload, _ in observer.received():
            if topic.split("/")[3] in ids:
                per_device[topic].append(payload)
        runs.append(dict(per_device))
        observer.close()
    assert runs[0] == runs[1] and sum(map(len, runs[0].values())) >= 3 * 40


def test_a_later_run_resumes_seq_and_meters(stack_settings: Settings) -> None:
    devices = provision_ephemeral(stack_settings, 2)
    first = Fleet(stack_settings, devices, seed=1, speed=7200, start=START, resume=True)
    first.run(3 * 3600)
    last = {link.device.identity.device_id: link.device.meters() for link in first.links}
    second = Fleet(stack_settings, devices, seed=1, speed=7200, resume=True)
    assert second.start >= START.timestamp() + 3 * 3600
    second.run(3600)
    for link in second.links:
        before = last[link.device.identity.device_id]
        after = link.device.meters()
        assert after["seq"] > before["seq"] and after["energy_wh"] >= before["energy_wh"]
    acked = read_acked(Path(second.stats.acked_path))
    assert acked and all(seq > last[device_id]["seq"] for device_id, seq in acked)


def test_thousand_devices_publish_and_get_pubacks(stack_settings: Settings) -> None:
    devices = provision_ephemeral(stack_settings, 1000)
    fleet = Fleet(stack_settings, devices, seed=2, speed=600, start=START, resume=False)
    stats = fleet.run(900)
    assert stats.connected_peak == 1000 and stats.connect_failures == 0
    assert stats.generated >= 2000 and stats.acked == stats.published == stats.generated
    counts = stats.per_device
    assert all(c.acked_readings >= 2 for c in counts.values())
    assert sorted(fleet.acked_readings()) == sorted(
        (device_id, seq)
        for device_id, c in counts.items()
        for seq in range(1, c.acked_readings + 1)
    )


def test_sigterm_drains_and_marks_devices_offline(
    stack_settings: Settings, stack_env: dict[str, str], observer_factory
) -> None:
    sim_dir = stack_settings.state_path / "sim"
    before = set(os.listdir(sim_dir)) if sim_dir.exists() else set()
    proc = subprocess.Popen(
        [GRIDSHARE, "sim", "--ephemeral", "--devices", "30", "--speed", "600", "--duration", "7d"],
        env=stack_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    run_dirs: set[str] = set()
    while time.monotonic() < deadline and not run_dirs:
        time.sleep(0.5)
        run_dirs = set(os.listdir(sim_dir)) - before if sim_dir.exists() else set()
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "publishes acknowledged" in out
    (run_dir,) = run_dirs
    stats = json.loads((sim_dir / run_dir / "stats.json").read_text())
    assert stats["stopped_early"] and stats["in_flight"] == 0 and stats["buffered"] == 0
    assert stats["acked"] == stats["generated"] > 0
    device_ids = {d for d, _ in read_acked(sim_dir / run_dir / "acked.tsv")}
    observer = observer_factory(["gridshare/v1/devices/+/status"])
    assert observer.wait_for(
        lambda: {t.split("/")[3] for t, _, _ in observer.received()} >= device_ids
    )
    retained = {t.split("/")[3]: p for t, p, r in observer.received() if r}
    assert all(retained[d] == b"offline" for d in device_ids)
    assert any('"msg": "sim progress"' in line for line in err.splitlines())


def test_devices_reconnect_and_replay_after_a_broker_restart(stack_settings: Settings) -> None:
    devices = provision_ephemeral(stack_settings, 50)
    fleet = Fleet(stack_settings, devices, seed=4, speed=1800, start=START, resume=False)
    outcome: dict[str, object] = {}
    runner = threading.Thread(target=lambda: outcome.update(stats=fleet.run(6 * 3600)))
    runner.start()
    time.sleep(3)
    mosquitto = stack.Mosquitto(stack_settings)
    mosquitto.down()
    time.sleep(1)
    mosquitto.up()
    runner.join(120)
    stats = outcome["stats"]
    assert stats.reconnects >= len(devices)
    assert stats.in_flight == 0 and stats.buffered == 0 and stats.dropped == 0
    assert stats.acked == stats.generated
    acked = fleet.acked_readings()
    assert len(acked) == len(set(acked)) == stats.acked_readings
    for device_id, counts in stats.per_device.items():
        seqs = sorted(seq for d, seq in acked if d == device_id)
        assert seqs == list(range(1, counts.generated + 1))
