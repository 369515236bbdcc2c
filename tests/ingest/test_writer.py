"""The writer's device_state rules on a real database: readings folded in SQL, statuses after
them in arrival order."""

from __future__ import annotations

import itertools
import time

import psycopg

from gridshare.core.payloads import parse_telemetry
from gridshare.ingest.validate import Message, Reading, StatusChange, Verdict
from gridshare.ingest.writer import BatchWriter
from tests.ingest.fleet import Device, register

ticks = itertools.count(1)


def message(topic: str, payload: bytes, at: float) -> Message:
    return Message(next(ticks), 1, 1, topic, payload, at, float(next(ticks)))


def reading(device: Device, seq: int, at: float, **overrides: object) -> Reading:
    payload = device.reading(seq, **overrides)
    return Reading(message(device.topic, payload, at), *parse_telemetry(payload))


def status(device: Device, online: bool, at: float) -> StatusChange:
    word = b"online" if online else b"offline"
    return StatusChange(message(device.status_topic, word, at), device.device_id, online)


def state(conn: psycopg.Connection, device: Device) -> tuple:
    return conn.execute(
        "SELECT online, extract(epoch FROM last_seen), readings, last_seq, energy_wh_total"
        " FROM device_state WHERE device_id = %s",
        (device.device_id,),
    ).fetchone()


def near(stored: object, seconds: float) -> bool:
    return abs(float(stored) - seconds) < 2e-6  # type: ignore[arg-type]


def write(conn: psycopg.Connection, verdicts: list[Verdict]) -> list[str]:
    return BatchWriter(conn).write(verdicts).devices


def test_the_last_event_in_arrival_order_decides_online(conn: psycopg.Connection) -> None:
    late_offline, late_reading = register(conn, 2)
    t = time.time()
    changed = write(
        conn,
        [
            reading(late_offline, 1, t, energy_wh_total=100),
            status(late_offline, False, t + 1),
            status(late_reading, False, t),
            reading(late_reading, 1, t + 1, energy_wh_total=100),
        ],
    )
    assert changed == sorted([late_offline.device_id, late_reading.device_id])
    offline = state(conn, late_offline)
    assert offline[0] is False and near(offline[1], t)  # an offline status is no sign of life
    assert offline[2:] == (1, 1, 100)
    online = state(conn, late_reading)
    assert online[0] is True and near(online[1], t + 1)


def test_meters_follow_the_highest_seq_and_every_reading_counts(
    conn: psycopg.Connection,
) -> None:
    (device,) = register(conn, 1)
    t = time.time()
    newest = reading(device, 3, t, energy_wh_total=300)
    older = reading(device, 2, t + 1, energy_wh_total=200)
    write(conn, [newest, older])
    assert state(conn, device)[2:] == (2, 3, 300)
    write(conn, [reading(device, 1, t + 2, energy_wh_total=50)])  # replayed, older
    _, seen, readings, last_seq, energy = state(conn, device)
    assert (readings, last_seq, energy) == (3, 3, 300)
    assert near(seen, t + 2)


def test_a_status_that_changes_nothing_notifies_nothing(conn: psycopg.Connection) -> None:
    (device,) = register(conn, 1)
    t = time.time()
    write(conn, [reading(device, 1, t)])
    assert write(conn, [status(device, True, t - 10)]) == []
    assert write(conn, [status(device, False, t + 1)]) == [device.device_id]


def test_readings_stored_before_the_device_had_a_state_are_duplicates(
    conn: psycopg.Connection,
) -> None:
    """Duplicates are decided under the row lock, before the move: a device with no stored
    reading in device_state still has its seqs looked up (rows restored or loaded by hand)."""
    (device,) = register(conn, 1)
    t = time.time()
    write(conn, [reading(device, 1, t, energy_wh_total=100)])
    conn.execute(
        "UPDATE device_state SET last_seq = NULL, readings = 0 WHERE device_id = %s",
        (device.device_id,),
    )
    outcome = BatchWriter(conn).write(
        [reading(device, 1, t + 1, energy_wh_total=100), reading(device, 2, t + 1)]
    )
    assert [r.telemetry.seq for r in outcome.duplicates] == [1]
    assert [r.telemetry.seq for r in outcome.stored] == [2]
    count = conn.execute(
        "SELECT count(*) FROM telemetry WHERE device_id = %s", (device.device_id,)
    ).fetchone()
    assert count == (2,)
