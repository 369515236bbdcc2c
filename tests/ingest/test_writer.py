"""The writer's rules on a real database: readings folded in SQL, statuses after them in
arrival order, and duplicates and conflicts found in any chunk while only readings with no
stored twin at their own device time are looked up in every chunk."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from gridshare.core import db
from gridshare.core.payloads import canonical_bytes, format_ts, parse_telemetry
from gridshare.ingest.validate import Message, Reading, StatusChange, Verdict
from gridshare.ingest.writer import NEIGHBOURS, BatchWriter, twin_probe
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


def fill_days(conn: psycopg.Connection, device: Device, days: int) -> None:
    """One reading a day for the last `days` days, put in directly: on a hypertable, a chunk
    a day."""
    conn.execute(
        "INSERT INTO telemetry (time, device_id, seq, status, energy_wh_total,"
        " revenue_minor_total, signed_bytes, sig)"
        " SELECT now() - d * interval '1 day', %s, 1000 - d, 'idle', 0, 0, '', ''"
        " FROM generate_series(1, %s) AS d",
        (device.device_id, days),
    )


def days_ago(days: float) -> str:
    return format_ts(datetime.now(UTC).replace(microsecond=0) - timedelta(days=days))


def seqs(readings: list[Reading]) -> list[int]:
    return [r.telemetry.seq for r in readings]


def test_copies_of_readings_weeks_old_are_decided_without_an_unbounded_lookup(
    conn: psycopg.Connection,
) -> None:
    device, filler = register(conn, 2)
    fill_days(conn, filler, 40)
    t = time.time()
    old = days_ago(20)
    write(conn, [reading(device, 1, t, ts=old), reading(device, 2, t, ts=days_ago(1))])
    again = BatchWriter(conn).write(
        [
            reading(device, 1, t + 1, ts=old),  # redelivered
            reading(device, 1, t + 1, ts=old, energy_wh_total=5),  # signed twice, same time
        ]
    )
    assert seqs(again.duplicates) == [1]
    assert [q.reason.value for q in again.quarantined] == ["conflicting_reading"]
    assert again.unbounded == 0


def test_a_conflicting_copy_with_a_fresh_time_finds_its_twin_weeks_back(
    conn: psycopg.Connection,
) -> None:
    device, filler = register(conn, 2)
    fill_days(conn, filler, 40)
    old = device.fields(5, ts=days_ago(25), energy_wh_total=500, revenue_minor_total=150)
    conn.execute(
        "INSERT INTO telemetry (time, device_id, seq, status, energy_wh_total,"
        " revenue_minor_total, signed_bytes, sig) VALUES (%s, %s, 5, 'idle', 500, 150, %s, '')",
        (datetime.fromisoformat(old["ts"]), device.device_id, canonical_bytes(old)),
    )
    t = time.time()
    write(conn, [reading(device, 6, t, ts=days_ago(1), energy_wh_total=600)])
    outcome = BatchWriter(conn).write(
        [reading(device, 5, t, ts=days_ago(0.5), energy_wh_total=550, revenue_minor_total=160)]
    )
    assert [(q.reason.value, q.detail) for q in outcome.quarantined] == [
        ("conflicting_reading", "seq 5 is stored with other signed bytes")
    ]
    assert outcome.stored == [] and outcome.unbounded == 1
    flagged = conn.execute(
        "SELECT reason, seq FROM device_flags WHERE device_id = %s", (device.device_id,)
    ).fetchall()
    assert flagged == [("conflicting_reading", 5)]


def test_an_out_of_order_new_reading_is_stored_against_its_neighbours(
    conn: psycopg.Connection,
) -> None:
    (device,) = register(conn, 1)
    t = time.time()
    write(conn, [reading(device, 1, t), reading(device, 4, t)])
    late = BatchWriter(conn).write([reading(device, 2, t + 1)])
    assert seqs(late.stored) == [2] and late.unbounded == 1
    above_next = BatchWriter(conn).write([reading(device, 3, t + 2, energy_wh_total=4500)])
    assert [q.reason.value for q in above_next.quarantined] == ["meter_regression"]
    assert above_next.unbounded == 1
    assert BatchWriter(conn).write([reading(device, 5, t + 3)]).unbounded == 0


def chunk_scans(conn: psycopg.Connection, query: sql.Composable, params: tuple) -> int:
    plan = conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
    return sum(" on _hyper_" in line for (line,) in plan)


def test_the_twin_probe_plans_only_the_chunks_of_the_batch(conn: psycopg.Connection) -> None:
    flavor = db.schema_flavor(conn)
    if flavor is None or not flavor.hypertables:
        pytest.skip("telemetry is a plain table on this flavor: no chunks")
    device, filler = register(conn, 2)
    fill_days(conn, filler, 40)
    chunks = conn.execute("SELECT count(*) FROM show_chunks('telemetry')").fetchone()[0]
    at = datetime.now(UTC) - timedelta(days=3)
    probe = ([0], [device.device_id], [7], [at])
    assert chunk_scans(conn, twin_probe(at, at), probe) == 1
    assert chunk_scans(conn, twin_probe(at - timedelta(days=2), at), probe) == 3
    assert chunk_scans(conn, sql.SQL(NEIGHBOURS), probe[:3]) >= 3 * chunks >= 3 * 40


def test_only_plain_postgresql_refuses_a_seq_inserted_again_with_another_time(
    conn: psycopg.Connection,
) -> None:
    """The rule docs/database.md states per flavor: on a hypertable only ingest keeps
    (device_id, seq) unique."""
    (device,) = register(conn, 1)
    insert = (
        "INSERT INTO telemetry (time, device_id, seq, status, energy_wh_total,"
        " revenue_minor_total, signed_bytes, sig)"
        " VALUES (now() - %s * interval '1 day', %s, 1, 'idle', 0, 0, '', '')"
    )
    conn.execute(insert, (0, device.device_id))
    flavor = db.schema_flavor(conn)
    if flavor is not None and flavor.hypertables:
        conn.execute(insert, (3, device.device_id))
        count = conn.execute(
            "SELECT count(*) FROM telemetry WHERE device_id = %s", (device.device_id,)
        ).fetchone()
        assert count == (2,)
    else:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, (3, device.device_id))
