"""Provenance at ingest, end to end (broker, worker process, database): the evidence of every
stored reading, equivocation flagged and cleared, device clocks and meters bounded."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from gridshare.core import chain
from gridshare.core.ids import text_id
from gridshare.core.payloads import canonical_bytes, encode_reading, format_ts
from gridshare.core.signing import address_for_key, recover
from gridshare.gateway import onchain
from tests.ingest.fleet import GRIDSHARE, quarantined, register, stored, wait_until
from tests.support import free_port


def evidence(conn: psycopg.Connection, device_id: str) -> list[tuple[int, bytes, bytes]]:
    rows = conn.execute(
        "SELECT seq, signed_bytes, sig FROM telemetry WHERE device_id = %s ORDER BY seq",
        (device_id,),
    ).fetchall()
    return [(seq, bytes(signed), bytes(sig)) for seq, signed, sig in rows]


def flags(conn: psycopg.Connection, device_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT reason, seq, signed_bytes, sig, cleared_at IS NOT NULL, cleared_by, clear_reason"
        " FROM device_flags WHERE device_id = %s ORDER BY id",
        (device_id,),
    ).fetchall()


def metric(port: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


def test_every_stored_reading_keeps_its_signed_bytes_and_signature(conn, ingest_worker, publisher):
    (device,) = register(conn, 1)
    ingest_worker()
    for seq in (1, 2, 3):
        publisher.publish(device.topic, device.reading(seq))
    publisher.flush()
    wait_until(lambda: stored(conn, [device])[0] == 3, 30, "three readings")
    rows = evidence(conn, device.device_id)
    assert [seq for seq, _, _ in rows] == [1, 2, 3]
    for seq, signed, sig in rows:
        assert signed == canonical_bytes(device.fields(seq))
        assert len(sig) == 65
        assert recover(signed, "0x" + sig.hex()) == address_for_key(device.key)


def test_conflicting_reading_is_kept_flags_the_device_and_is_cleared_with_a_reason(
    stack_env, conn, ingest_worker, publisher
):
    (device,) = register(conn, 1)
    port = free_port()
    ingest_worker(ingest_metrics_port=str(port))
    original = device.reading(2)
    for payload in (device.reading(1), original, device.reading(3)):
        publisher.publish(device.topic, payload)
    publisher.flush()
    wait_until(lambda: stored(conn, [device])[0] == 3, 30, "three readings")

    publisher.publish(device.topic, original)  # a redelivered copy: a plain duplicate
    publisher.flush()
    wait_until(
        lambda: metric(port, 'gridshare_ingest_messages_total{outcome="duplicate"}'), 10, "dup"
    )
    assert quarantined(conn, device.device_id) == []
    assert flags(conn, device.device_id) == []

    # the same seq, validly signed, with other meters: a cloned or tampered unit
    forged = device.reading(2, energy_wh_total=2500, revenue_minor_total=700)
    publisher.publish(device.topic, forged)
    publisher.flush()
    rows = wait_until(lambda: quarantined(conn, device.device_id), 10, "conflict quarantined")
    assert [(r[0], bytes(r[2])) for r in rows] == [("conflicting_reading", forged)]
    reason, seq, signed, sig, cleared, _, _ = flags(conn, device.device_id)[0]
    assert (reason, seq, cleared) == ("conflicting_reading", 2, False)
    forged_fields = device.fields(2, energy_wh_total=2500, revenue_minor_total=700)
    assert bytes(signed) == canonical_bytes(forged_fields)
    assert recover(bytes(signed), "0x" + bytes(sig).hex()) == address_for_key(device.key)
    # both readings are kept: the stored one untouched, the other in quarantine and the flag
    assert evidence(conn, device.device_id)[1][1] == canonical_bytes(device.fields(2))
    assert metric(port, 'gridshare_ingest_quarantined_total{reason="conflicting_reading"}') == 1
    # the copy and the conflicting reading share the stored one's time: found in its chunk
    assert metric(port, "gridshare_ingest_unbounded_probes_total") == 0
    flagged = conn.execute(
        "SELECT open_flags, reasons FROM flagged_devices WHERE device_id = %s",
        (device.device_id,),
    ).fetchone()
    assert flagged == (1, ["conflicting_reading"])

    cleared = subprocess.run(
        [GRIDSHARE, "devices", "clear-flag", device.device_id, "--reason", "unit swapped, RMA 17"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cleared.returncode == 0, cleared.stderr
    assert "1 open flag(s) cleared" in cleared.stdout
    (row,) = flags(conn, device.device_id)
    assert row[4] is True and "@" in row[5]
    assert row[6] == "unit swapped, RMA 17"
    assert conn.execute(
        "SELECT count(*) FROM flagged_devices WHERE device_id = %s", (device.device_id,)
    ).fetchone() == (0,)
    again = subprocess.run(
        [GRIDSHARE, "devices", "clear-flag", device.device_id, "--reason", "again"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "no open flags" in again.stdout
    with psycopg.connect(conn.info.dsn, autocommit=True) as other:
        for sql in ("DELETE FROM device_flags", "UPDATE device_flags SET clear_reason = 'x'"):
            try:
                other.execute(sql + " WHERE device_id = %s", (device.device_id,))
            except psycopg.errors.RaiseException:
                continue
            raise AssertionError(f"{sql} was allowed")


def test_device_clock_far_ahead_or_decades_back_is_bad_timestamp(conn, ingest_worker, publisher):
    early, ahead, good = register(conn, 3)
    ingest_worker(ingest_max_clock_ahead_seconds="300", ingest_max_backfill_seconds="2592000")
    now = datetime.now(UTC)
    cases = {
        early: format_ts(datetime(1970, 1, 1, tzinfo=UTC)),
        ahead: format_ts(now + timedelta(days=1)),
        good: format_ts(now - timedelta(days=29)),
    }
    for device, ts in cases.items():
        publisher.publish(device.topic, device.reading(1, ts=ts))
    publisher.flush()
    wait_until(lambda: stored(conn, [good])[0] == 1, 30, "the reading inside the window")
    for device in (early, ahead):
        rows = wait_until(lambda d=device: quarantined(conn, d.device_id), 10, "bad_timestamp")
        assert [r[0] for r in rows] == ["bad_timestamp"], rows
    assert "ahead of receipt" in quarantined(conn, ahead.device_id)[0][1]
    assert stored(conn, [early, ahead]) == (0, 0)


def test_meter_jump_beyond_rated_capacity_is_implausible(conn, ingest_worker, publisher):
    energy_jump, revenue_jump = register(conn, 2)
    conn.execute(
        "UPDATE devices SET rated_power_w = 7000 WHERE device_id = ANY(%s)",
        ([energy_jump.device_id, revenue_jump.device_id],),
    )
    ingest_worker()
    jump = 1000 * 7000 * 60 // 3600  # 1,000x what 7 kW gives in the minute between readings
    for device in (energy_jump, revenue_jump):
        publisher.publish(device.topic, device.reading(1))
    publisher.publish(energy_jump.topic, energy_jump.reading(2, energy_wh_total=1000 + jump))
    publisher.publish(revenue_jump.topic, revenue_jump.reading(2, revenue_minor_total=10**9))
    for device in (energy_jump, revenue_jump):  # the next reading compares with seq 1
        publisher.publish(device.topic, device.reading(3))
    publisher.flush()
    wait_until(lambda: stored(conn, [energy_jump, revenue_jump])[0] == 4, 30, "plausible ones")
    for device, field in ((energy_jump, "energy_wh_total"), (revenue_jump, "revenue_minor_total")):
        rows = wait_until(lambda d=device: quarantined(conn, d.device_id), 10, "implausible")
        assert [r[0] for r in rows] == ["implausible_reading"]
        assert rows[0][1].startswith(f"{field} rose"), rows[0][1]
    seqs = conn.execute(
        "SELECT device_id, array_agg(seq ORDER BY seq) FROM telemetry"
        " WHERE device_id = ANY(%s) GROUP BY 1",
        ([energy_jump.device_id, revenue_jump.device_id],),
    ).fetchall()
    assert sorted(s for _, s in seqs) == [[1, 3], [1, 3]]


def test_currency_other_than_the_pools_is_wrong_currency(conn, ingest_worker, publisher):
    (device,) = register(conn, 1)
    ingest_worker()
    publisher.publish(device.topic, encode_reading(device.fields(1, currency="USD"), device.key))
    publisher.publish(device.topic, device.reading(2))
    publisher.flush()
    wait_until(lambda: stored(conn, [device])[0] == 1, 30, "the HKD reading")
    rows = wait_until(lambda: quarantined(conn, device.device_id), 10, "wrong_currency")
    assert [r[0] for r in rows] == ["wrong_currency"]


def test_signatures_are_checked_against_the_on_chain_key_and_its_rotation(
    stack_settings, conn, ingest_worker, publisher
):
    """The database's copy of the address is not trusted: the chain's key decides, and after
    a rotation on-chain the new key signs what the device reads after it."""
    chain.deploy(stack_settings)
    client = chain.ChainClient(stack_settings)
    registry = client.contract(
        "DeviceRegistry", chain.read_deployment(stack_settings).address("DeviceRegistry")
    )
    (device,) = register(conn, 1)
    client.transact(
        registry.functions.register(
            text_id(device.device_id),
            address_for_key(device.key),
            text_id("charging-pile-keys"),
        ),
        chain.load_accounts(stack_settings).operator,
    )
    forger = os.urandom(32)  # whoever can write the database points it at their own key
    conn.execute(
        "UPDATE devices SET address = %s WHERE device_id = %s",
        (address_for_key(forger), device.device_id),
    )
    ingest_worker()
    publisher.publish(device.topic, device.reading(1))
    publisher.publish(device.topic, encode_reading(device.fields(2), forger))
    publisher.flush()
    wait_until(lambda: stored(conn, [device])[0] == 1, 30, "the reading the chain's key signed")
    rows = wait_until(lambda: quarantined(conn, device.device_id), 10, "the forged reading")
    assert [r[0] for r in rows] == ["bad_signature"] and "on-chain key" in rows[0][1]

    rotated = os.urandom(32)
    onchain.rotate_key(stack_settings, device.device_id, address_for_key(rotated))
    time.sleep(1.1)  # device time after the rotation's block time (whole seconds)
    after = format_ts(datetime.now(UTC))
    publisher.publish(device.topic, encode_reading(device.fields(3, ts=after), rotated))
    publisher.publish(device.topic, encode_reading(device.fields(4, ts=after), device.key))
    publisher.flush()
    wait_until(lambda: stored(conn, [device])[0] == 2, 30, "the reading the new key signed")
    rows = wait_until(lambda: quarantined(conn, device.device_id)[1:], 10, "the old key's")
    assert [r[0] for r in rows] == ["bad_signature"]
    assert [r[0] for r in evidence(conn, device.device_id)] == [1, 3]
