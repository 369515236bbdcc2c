"""The signers check what they sign against the chain: tampered readings exclude their device
(the pool still settles), tampered start values are ignored in favour of the leaves the chain
commits to, deleted readings lose nothing, a flagged device is excluded until cleared and its
revenue carries, and readings verify against the key the device held at their time, read
from the registry's key events in batches."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from gridshare.core import meter_rule as rule
from gridshare.core.chain import device_keys
from gridshare.core.chain.device_keys import DeviceKeys, KeySpan
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key
from gridshare.core.timegrid import align
from gridshare.gateway.onchain import rotate_key
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.oracle.leaves import DeviceLeaf
from gridshare.oracle.provenance import StoredReading, check_reading
from gridshare.oracle.transitions import OracleError
from tests.oracle.conftest import (
    STEP,
    T0,
    Row,
    device_key,
    fill,
    insert_readings,
    make_pool,
    signed_row,
    store,
    use_key,
)

DAY = timedelta(days=1)


def leaf_of(db: psycopg.Connection, pool: str, epoch: int, device: str) -> tuple[DeviceLeaf, str]:
    row = db.execute(
        "SELECT leaf_data, excluded, exclusion_detail FROM oracle_leaves"
        " WHERE pool = %s AND epoch = %s AND device_id = %s",
        (pool, epoch, device),
    ).fetchone()
    assert row is not None
    leaf = DeviceLeaf.from_signing_bytes(pool, device, bytes(row[0]))
    assert leaf.exclusion == row[1]
    return leaf, row[2] or ""


def meters(db: psycopg.Connection, device: str) -> list[rule.Reading]:
    return [
        rule.Reading(t, seq, int(e), int(r), int(s or 0))
        for t, seq, e, r, s in db.execute(
            "SELECT time, seq, energy_wh_total, revenue_minor_total, sessions_total"
            " FROM telemetry WHERE device_id = %s ORDER BY time, seq",
            (device,),
        )
    ]


def total_energy(db: psycopg.Connection, pool: str, device: str) -> int:
    return sum(
        int(e)
        for (e,) in db.execute(
            "SELECT energy_wh FROM oracle_leaves WHERE pool = %s AND device_id = %s", (pool, device)
        )
    )


def test_a_tampered_reading_excludes_its_device_and_the_pool_settles(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=3)
    victim, *others = pool.devices
    fill(db, pool, 1.05)
    # the last reading before the period end decides the end value: raise its meter
    (seq,) = db.execute(
        "SELECT seq FROM telemetry WHERE device_id = %s AND time < %s ORDER BY time DESC LIMIT 1",
        (victim, T0 + DAY),
    ).fetchone()
    db.execute(
        "UPDATE telemetry SET energy_wh_total = energy_wh_total + 50000"
        " WHERE device_id = %s AND seq = %s",
        (victim, seq),
    )
    outcome = attest_next(ctx, pool.name)
    assert outcome.status == "confirmed", outcome.message
    leaf, detail = leaf_of(db, pool.name, 1, victim)
    assert leaf.exclusion == "reading_mismatch"
    assert f"seq {seq}: energy_wh_total" in detail
    assert (leaf.energy_wh, leaf.revenue_minor, leaf.end_energy_wh) == (0, 0, 0)
    for device in others:
        good, _ = leaf_of(db, pool.name, 1, device)
        assert good.excluded == 0 and good.energy_wh > 0
    answers = db.execute(
        "SELECT count(*) FROM oracle_signatures WHERE pool = %s AND epoch = 1 AND agrees",
        (pool.name,),
    ).fetchone()
    assert answers[0] >= ctx.threshold


def test_tampered_start_values_are_ignored_and_tampered_leaves_refused(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "pv_plant", devices=2)
    fill(db, pool, 2.05)
    assert attest_next(ctx, pool.name).status == "confirmed"
    device = pool.devices[0]
    first, _ = leaf_of(db, pool.name, 1, device)
    db.execute(
        "UPDATE oracle_leaves SET end_energy_wh = 0, end_revenue_minor = 0"
        " WHERE pool = %s AND epoch = 1",
        (pool.name,),
    )
    assert attest_next(ctx, pool.name).status == "confirmed"
    second, _ = leaf_of(db, pool.name, 2, device)
    assert second.end_energy_wh - second.energy_wh == first.end_energy_wh  # chain's start
    points = meters(db, device)
    end = rule.meters_at(*rule.around(points, T0 + 2 * DAY), T0 + 2 * DAY)
    assert end is not None and second.end_energy_wh == end.energy

    # a leaf rewritten in the database no longer makes the on-chain root: refused
    insert_readings(db, device, T0 + 2.05 * DAY, T0 + 3.05 * DAY)
    insert_readings(db, pool.devices[1], T0 + 2.05 * DAY, T0 + 3.05 * DAY, offset=7)
    forged = dataclasses.replace(second, end_energy_wh=second.end_energy_wh - 1000)
    db.execute(
        "UPDATE oracle_leaves SET leaf_data = %s WHERE pool = %s AND epoch = 2 AND device_id = %s",
        (forged.signing_bytes(), pool.name, device),
    )
    with pytest.raises(OracleError, match="chain holds"):
        attest_next(ctx, pool.name)
    refusals = db.execute(
        "SELECT count(*) FROM oracle_signatures WHERE pool = %s AND epoch = 3", (pool.name,)
    ).fetchone()
    assert refusals[0] == 0  # nothing was signed


def test_deleted_readings_lose_nothing(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=2)
    device = pool.devices[0]
    fill(db, pool, 2.05)
    db.execute(
        "DELETE FROM telemetry WHERE device_id = %s AND time >= %s AND time < %s",
        (device, T0 + timedelta(hours=18), T0 + timedelta(hours=30)),
    )
    assert attest_next(ctx, pool.name).status == "confirmed"
    assert attest_next(ctx, pool.name).status == "confirmed"
    points = meters(db, device)
    end = rule.meters_at(*rule.around(points, T0 + 2 * DAY), T0 + 2 * DAY)
    assert end is not None
    assert total_energy(db, pool.name, device) == end.energy - points[0].energy
    first, _ = leaf_of(db, pool.name, 1, device)
    assert first.excluded == 0 and first.energy_wh < end.energy - points[0].energy


def test_a_flagged_device_is_excluded_until_cleared_and_its_revenue_carries(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "battery_swap", devices=2)
    device = pool.devices[1]
    fill(db, pool, 1.05)
    db.execute(
        "INSERT INTO device_flags (device_id, reason, detail, seq)"
        " VALUES (%s, 'conflicting_reading', 'two signed readings for seq 7', 7)",
        (device,),
    )
    assert attest_next(ctx, pool.name).status == "confirmed"
    first, detail = leaf_of(db, pool.name, 1, device)
    assert first.exclusion == "flagged" and "clear" in detail
    assert (first.energy_wh, first.revenue_minor) == (0, 0)
    db.execute(
        "UPDATE device_flags SET cleared_at = now(), cleared_by = 'test', clear_reason = 'ok'"
        " WHERE device_id = %s",
        (device,),
    )
    for i, d in enumerate(pool.devices):
        insert_readings(db, d, T0 + 1.05 * DAY, T0 + 2.05 * DAY, offset=i * 7)
    assert attest_next(ctx, pool.name).status == "confirmed"
    second, _ = leaf_of(db, pool.name, 2, device)
    assert second.excluded == 0
    points = meters(db, device)
    end = rule.meters_at(*rule.around(points, T0 + 2 * DAY), T0 + 2 * DAY)
    assert end is not None
    # everything since the first reading, day 1 included, is paid in epoch 2
    assert second.energy_wh == end.energy - points[0].energy
    assert second.revenue_minor == end.revenue - points[0].revenue


def test_an_implausible_jump_excludes_the_device(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=2)
    device = pool.devices[0]
    insert_readings(db, pool.devices[1], T0, T0 + 1.05 * DAY)
    insert_readings(db, device, T0, T0 + 1.05 * DAY, energy_rate=100_000)  # 1,000x: 1.2 MW
    assert attest_next(ctx, pool.name).status == "confirmed"
    leaf, detail = leaf_of(db, pool.name, 1, device)
    assert leaf.exclusion == "implausible" and "rated power" in detail
    other, _ = leaf_of(db, pool.name, 1, pool.devices[1])
    assert other.excluded == 0


def test_readings_verify_against_the_key_held_at_their_time(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    hourly = ctx.settings.model_copy(update={"period_seconds": 3600})
    ctx = dataclasses.replace(ctx, settings=hourly)
    pool = make_pool(stack_settings, db, "charging_pile", devices=1)
    (device,) = pool.devices
    new_key = device_key(device, 1)
    rotate_key(stack_settings, device, address_for_key(new_key))
    keys = DeviceKeys(ctx.client.w3, ctx.record.address("DeviceRegistry"), ctx.record.block)
    keys.refresh()
    old, new = keys.spans(device)
    assert new.address == address_for_key(new_key) and old.valid_until == new.valid_from
    rotated_at = datetime.fromtimestamp(new.valid_from or 0, UTC)
    # readings from two hours before the rotation to two hours after (device time)
    first = align(rotated_at - timedelta(hours=2), timedelta(hours=1))
    rows = [
        Row(first + timedelta(seconds=STEP * k), k + 1, 1000 + 90 * k, 400 + 36 * k, k // 12)
        for k in range(int(5 * 3600 / STEP))
    ]
    before = [r for r in rows if r.time < rotated_at]
    after = [r for r in rows if r.time >= rotated_at]
    store(db, device, before)
    use_key(device, new_key)
    store(db, device, after)
    # the registry takes a period once it has ended on-chain: move the chain's clock on
    ctx.client.w3.provider.make_request("evm_increaseTime", [4 * 3600])
    ctx.client.w3.provider.make_request("evm_mine", [])
    for epoch in (1, 2, 3):
        outcome = attest_next(ctx, pool.name)
        flags = db.execute(
            "SELECT flags FROM oracle_epochs WHERE pool = %s AND epoch = %s", (pool.name, epoch)
        ).fetchone()
        assert outcome.status == "confirmed", (outcome.message, flags)
        leaf, detail = leaf_of(db, pool.name, epoch, device)
        assert leaf.excluded == 0, detail
    # and a reading after the rotation signed with the old key is not the device's
    use_key(device, device_key(device))
    late = Row(rotated_at + timedelta(minutes=1), 10_000, 10**6, 10**5, 0)
    values = signed_row(device, late)
    reading = StoredReading(device, late.time, late.seq, late.energy, late.revenue, 0, *values[8:])
    failed = check_reading(reading, keys.spans(device))
    assert failed is not None and failed[0] == "bad_signature"
    assert check_reading(reading, [])[0] == "no_onchain_key"  # type: ignore[index]


def test_key_history_is_the_same_read_at_once_block_by_block_or_as_it_grows(
    stack_settings: Settings,
    ctx: OracleContext,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key events are fetched in block ranges and decoded without web3's event decoder:
    each span's key, its bounds (the timestamps of the rotations' blocks) and its block are
    those of the transactions, however the history is read."""
    pool = make_pool(stack_settings, db, "charging_pile", devices=2)
    first, second = pool.devices
    registry = ctx.record.address("DeviceRegistry")
    growing = DeviceKeys(ctx.client.w3, registry, ctx.record.block)
    growing.refresh()
    registered = growing.spans(first)[0].block

    def rotate(device: str, generation: int) -> tuple[int, int]:
        """(block, its timestamp) of the rotation's transaction, a minute after the last."""
        ctx.client.w3.provider.make_request("evm_increaseTime", [60])
        tx = rotate_key(stack_settings, device, address_for_key(device_key(device, generation)))
        block = int(ctx.client.w3.eth.get_transaction_receipt(tx)["blockNumber"])  # type: ignore[arg-type]
        growing.refresh()
        return block, int(ctx.client.w3.eth.get_block(block)["timestamp"])

    (b1, t1), (b2, t2), (b3, t3) = rotate(first, 1), rotate(second, 1), rotate(first, 2)
    address = [address_for_key(device_key(first, g)) for g in range(3)]
    assert growing.spans(first) == [
        KeySpan(address[0], None, t1, registered),
        KeySpan(address[1], t1, t3, b1),
        KeySpan(address[2], t3, None, b3),
    ]
    assert growing.spans(second)[-1] == KeySpan(
        address_for_key(device_key(second, 1)), t2, None, b2
    )
    assert growing.key_at(first, datetime.fromtimestamp(t3 - 1, UTC)) == growing.spans(first)[1]
    at_once = DeviceKeys(ctx.client.w3, registry, ctx.record.block)
    at_once.refresh()
    monkeypatch.setattr(device_keys, "LOG_CHUNK_BLOCKS", 1)
    block_by_block = DeviceKeys(ctx.client.w3, registry, ctx.record.block)
    block_by_block.refresh()
    for device in (first, second):
        assert at_once.spans(device) == block_by_block.spans(device) == growing.spans(device)
    assert at_once.spans("cp-never-registered") == []
