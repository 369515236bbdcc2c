"""`gridshare ingest` against the real broker and database: exactly-once rows, quarantine of
every bad-input class, device state, live notifications, metrics, clean stop, start-up errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time

import httpx

from gridshare.core import db
from gridshare.core.payloads import MAX_PAYLOAD_BYTES, encode_reading
from gridshare.ingest.quarantine import QuarantinePolicy
from tests.ingest.fleet import (
    GRIDSHARE,
    Device,
    quarantined,
    register,
    stored,
    wait_until,
)
from tests.support import free_port


def test_exactly_n_rows_with_duplicates_and_reordering(
    stack_settings, conn, ingest_worker, publisher
):
    devices = register(conn, 20)
    unique = [(d, seq) for d in devices for seq in range(1, 31)]
    rng = random.Random(4)
    messages = unique + rng.sample(unique, 200)  # broker redeliveries and device replays
    rng.shuffle(messages)
    with db.connect(stack_settings, autocommit=True) as listener:
        listener.execute("LISTEN gridshare_device")
        # small batches: copies and lower seqs land in later batches, beside stored rows
        ingest_worker(ingest_batch_size="37")
        for device, seq in messages:
            publisher.publish(device.topic, device.reading(seq))
        publisher.flush()
        wait_until(lambda: stored(conn, devices)[0] >= len(unique), 30, "all rows")
        time.sleep(0.5)
        assert stored(conn, devices) == (len(unique), len(unique))
        notified = set()
        for note in listener.notifies(timeout=1, stop_after=10_000):
            notified |= set(json.loads(note.payload)["devices"])
        assert {d.device_id for d in devices} <= notified
    states = conn.execute(
        "SELECT readings, last_seq, energy_wh_total, revenue_minor_total, online"
        " FROM device_state WHERE device_id = ANY(%s)",
        ([d.device_id for d in devices],),
    ).fetchall()
    assert states == [(30, 30, 30_000, 9_000, True)] * len(devices)


def test_every_bad_input_class_is_quarantined_and_the_worker_goes_on(
    stack_settings, conn, ingest_worker, publisher
):
    devices = register(conn, 12)
    port = free_port()
    worker = ingest_worker(ingest_metrics_port=str(port))
    stranger = Device("cp-never-registered-1", os.urandom(32))
    good = devices[0]
    reading = good.fields(1)
    nan = good.reading(1).replace(b'"power_w":7200.0', b'"power_w":NaN')
    cases = {
        # device index: (payload, expected reason)
        1: (os.urandom(MAX_PAYLOAD_BYTES + 500), "too_large"),  # the broker refuses more
        2: (b"\xff\xfe\xfd not utf-8", "parse_error"),
        3: (b'{"v":1,', "parse_error"),
        4: (nan.replace(good.device_id.encode(), devices[4].device_id.encode()), "parse_error"),
        5: (devices[5].reading(1, power_w=-5.0), "schema_error"),
        6: (devices[6].reading(1, energy_wh_total=10**30), "schema_error"),
        7: (encode_reading({**devices[7].fields(1), "seq": "1"}, devices[7].key), "schema_error"),
        8: (b"[1, 2, 3]", "schema_error"),
        9: (devices[1].reading(1), "unknown_device"),  # another device's payload on 9's topic
        10: (encode_reading(devices[10].fields(1), os.urandom(32)), "bad_signature"),
        11: (
            json.dumps({**devices[11].fields(1), "sig": "0x" + "00" * 65}).encode(),
            "bad_signature",
        ),
    }
    for index, (payload, _) in cases.items():
        publisher.publish(devices[index].topic, payload)
    publisher.publish(stranger.topic, stranger.reading(1))
    for seq in (1, 2, 3):
        publisher.publish(good.topic, encode_reading({**reading, "seq": seq}, good.key))
    publisher.publish(good.topic, good.reading(4, energy_wh_total=10))  # meter went backwards
    publisher.flush()
    wait_until(lambda: stored(conn, [good])[0] == 3, 30, "good readings")
    wait_until(lambda: len(quarantined(conn, good.device_id)) == 1, 10, "regression")
    assert quarantined(conn, good.device_id)[0][0] == "meter_regression"
    for index, (payload, reason) in cases.items():
        rows = wait_until(lambda i=index: quarantined(conn, devices[i].device_id), 10, reason)
        kept = payload[: QuarantinePolicy().payload_bytes]
        assert [(r[0], bytes(r[2])) for r in rows] == [(reason, kept)], rows[0][1]
    assert [r[0] for r in quarantined(conn, stranger.device_id)] == ["unknown_device"]
    assert stored(conn, devices[1:]) == (0, 0)
    assert worker.alive()

    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for reason, count in (
        ("too_large", 1),
        ("parse_error", 3),
        ("schema_error", 4),
        ("unknown_device", 2),
        ("bad_signature", 2),
        ("meter_regression", 1),
    ):
        assert f'gridshare_ingest_quarantined_total{{reason="{reason}"}} {count:.1f}' in metrics
    assert 'gridshare_ingest_messages_total{outcome="stored"} 3.0' in metrics
    assert "gridshare_ingest_batch_seconds_count" in metrics

    # after all of that, the worker still stores what is good
    publisher.publish(good.topic, good.reading(5))
    publisher.flush()
    wait_until(lambda: stored(conn, [good])[0] == 4, 10, "reading after the bad ones")


def test_status_topic_and_last_seen_timeout(conn, ingest_worker, publisher):
    device, quiet = register(conn, 2)
    ingest_worker(ingest_offline_seconds="2")

    def online(d: Device) -> bool | None:
        row = conn.execute(
            "SELECT online FROM device_state WHERE device_id = %s", (d.device_id,)
        ).fetchone()
        return row[0] if row else None

    publisher.publish(device.status_topic, b"online", retain=True)
    publisher.publish(quiet.status_topic, b'{"status":"online"}', retain=True)
    publisher.flush()
    wait_until(lambda: online(device) and online(quiet), 10, "online")
    publisher.publish(device.status_topic, b"offline", retain=True)  # as the last will does
    publisher.flush()
    wait_until(lambda: online(device) is False, 10, "offline from status")
    publisher.publish(device.topic, device.reading(1))
    publisher.flush()
    wait_until(lambda: online(device), 10, "online after a reading")
    wait_until(lambda: online(quiet) is False, 15, "offline after the timeout")
    for d in (device, quiet):  # clear the retained statuses
        publisher.publish(d.status_topic, b"", retain=True)
    publisher.flush()


def test_retained_status_reaches_a_new_worker(conn, ingest_worker, publisher):
    device = register(conn, 1)[0]
    publisher.publish(device.status_topic, b"online", retain=True)
    publisher.flush()
    ingest_worker()
    wait_until(
        lambda: conn.execute(
            "SELECT online FROM device_state WHERE device_id = %s", (device.device_id,)
        ).fetchone(),
        10,
        "retained status applied",
    )
    publisher.publish(device.status_topic, b"", retain=True)
    publisher.flush()


def test_sigterm_keeps_the_session_for_what_is_published_meanwhile(conn, ingest_worker, publisher):
    devices = register(conn, 10)
    worker = ingest_worker(retire=False)
    for seq in range(1, 51):
        for device in devices:
            publisher.publish(device.topic, device.reading(seq))
    publisher.flush()
    assert worker.stop() == 0
    last = json.loads(worker.log().strip().splitlines()[-1])
    assert last["msg"] == "ingest worker stopped" and last["session_ended"] is False
    for seq in range(51, 61):  # nobody is connected: the broker queues them in the session
        for device in devices:
            publisher.publish(device.topic, device.reading(seq))
    publisher.flush()
    ingest_worker(worker.worker)  # same name, same session; retires at the end of the test
    wait_until(lambda: stored(conn, devices)[0] >= 600, 30, "readings published while away")
    time.sleep(0.5)
    assert stored(conn, devices) == (600, 600)


def test_retire_commits_everything_and_ends_the_session(conn, ingest_worker, publisher):
    devices = register(conn, 10)
    worker = ingest_worker(ingest_shared="true")
    for seq in range(1, 51):
        for device in devices:
            publisher.publish(device.topic, device.reading(seq))
    publisher.flush()
    assert worker.stop() == 0
    assert stored(conn, devices) == (500, 500)
    last = json.loads(worker.log().strip().splitlines()[-1])
    assert last["session_ended"] is True and last["stored"] == 500


def test_unreachable_services_at_start_fail_in_one_line(stack_env):
    for variable, url, service in (
        ("GRIDSHARE_DB_URL", f"postgresql://gridshare@127.0.0.1:{free_port()}/x", "database"),
        ("GRIDSHARE_MQTT_URL", f"mqtt://u:p@127.0.0.1:{free_port()}", "broker"),
    ):
        result = subprocess.run(
            [GRIDSHARE, "ingest", "--worker", "unreachable"],
            env={**stack_env, variable: url, "GRIDSHARE_INGEST_METRICS_PORT": "0"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.startswith("gridshare:")]
        assert len(lines) == 1 and f"{service} unreachable" in lines[0], result.stderr


def test_wrong_broker_password_fails_in_one_line(stack_env, stack_settings):
    url = f"mqtt://gridshare-ingest:wrong@{stack_settings.mqtt_host}:{stack_settings.mqtt_port}"
    result = subprocess.run(
        [GRIDSHARE, "ingest", "--worker", "badpass"],
        env={**stack_env, "GRIDSHARE_MQTT_URL": url, "GRIDSHARE_INGEST_METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "broker unreachable" in result.stderr.splitlines()[-1]


def test_devices_registered_while_the_worker_runs(conn, ingest_worker, publisher):
    """The worker loaded its device cache at start; later devices are looked up on sight,
    also for messages classified before the first lookup of their device returned."""
    ingest_worker()
    devices = register(conn, 30)
    for seq in range(1, 11):
        for device in devices:
            publisher.publish(device.topic, device.reading(seq))
    publisher.flush()
    wait_until(lambda: stored(conn, devices)[0] >= 300, 30, "readings of new devices")
    assert stored(conn, devices) == (300, 300)
    assert not any(quarantined(conn, d.device_id) for d in devices)
