"""Late data becomes the next epoch's adjustment; a signer reading tampered data disagrees;
the anomaly guard withholds a spiked epoch."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from urllib.parse import quote

import psycopg

from gridshare.core.chain.accounts import Accounts
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from tests.oracle.conftest import T0, fill, insert_readings, make_pool, oracle_settings
from tests.oracle.test_attestation_flow import reference_value


def leaf(db: psycopg.Connection, pool: str, epoch: int, device: str) -> dict:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM oracle_leaves WHERE pool = %s AND epoch = %s AND device_id = %s",
            (pool, epoch, device),
        ).fetchone()
    assert row is not None
    return row


def test_late_readings_become_the_next_epochs_adjustment(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=3)
    late, *others = pool.devices
    for device in others:
        insert_readings(db, device, T0, T0 + timedelta(days=1.05))
    insert_readings(db, late, T0, T0 + timedelta(hours=12))  # then silent (disconnected)
    assert attest_next(ctx, pool.name).status == "confirmed"
    first = leaf(db, pool.name, 1, late)
    assert first["readings"] == 144 and int(first["adjustment_energy_wh"]) == 0

    # the device reconnects and replays its buffer; everyone reports through day 2
    insert_readings(db, late, T0 + timedelta(hours=12), T0 + timedelta(days=2.05))
    for device in others:
        insert_readings(db, device, T0 + timedelta(days=1.05), T0 + timedelta(days=2.05))
    assert attest_next(ctx, pool.name).status == "confirmed"

    series = [
        (t, int(v))
        for t, v in db.execute(
            "SELECT time, energy_wh_total FROM telemetry WHERE device_id = %s ORDER BY time",
            (late,),
        )
    ]
    start2, end2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    second = leaf(db, pool.name, 2, late)
    carried = reference_value(series, start2) - int(first["end_energy_wh"])
    assert carried > 0
    assert int(second["adjustment_energy_wh"]) == carried
    assert second["late_readings"] == 144  # the replayed second half of day 1
    assert int(second["start_energy_wh"]) == int(first["end_energy_wh"])  # nothing rewritten
    # nothing lost, nothing counted twice: both epochs add up to the meter difference
    assert int(first["energy_wh"]) + int(second["energy_wh"]) == (
        reference_value(series, end2) - series[0][1]
    )
    epoch2 = db.execute(
        "SELECT adjustment_energy_wh FROM oracle_epochs WHERE pool = %s AND epoch = 2",
        (pool.name,),
    ).fetchone()
    assert epoch2 is not None and int(epoch2[0]) == carried
    # epoch 1 stays as attested
    assert leaf(db, pool.name, 1, late) == first


def tampered_url(settings: Settings, db: psycopg.Connection) -> str:
    """A database URL whose `telemetry` is a view doubling every energy meter."""
    db.execute("CREATE SCHEMA IF NOT EXISTS tampered")
    db.execute(
        """CREATE OR REPLACE VIEW tampered.telemetry AS
           SELECT time, device_id, seq, status, power_w, soc_pct, energy_wh_total * 2
                  AS energy_wh_total, sessions_total, revenue_minor_total, currency,
                  received_at
           FROM public.telemetry"""
    )
    return settings.db_url + "?options=" + quote("-csearch_path=tampered,public")


def test_one_tampered_signer_is_outvoted_and_recorded(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "pv_plant", devices=2)
    fill(db, pool, 1.05)
    ctx = dataclasses.replace(
        ctx,
        settings=oracle_settings(
            ctx.settings, oracle_signer_db_urls={0: tampered_url(stack_settings, db)}
        ),
    )
    assert attest_next(ctx, pool.name).status == "confirmed"
    answers = db.execute(
        "SELECT signer, agrees FROM oracle_signatures WHERE pool = %s AND epoch = 1",
        (pool.name,),
    ).fetchall()
    assert dict(answers)[ctx.accounts.oracles[0].address] is False
    assert sum(agrees for _, agrees in answers) >= 3


def test_disagreement_below_threshold_is_flagged_not_submitted(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "battery_swap", devices=2)
    fill(db, pool, 1.05)
    three = Accounts(
        ctx.accounts.admin, ctx.accounts.operator, ctx.accounts.oracles[:3], ctx.accounts.investors
    )
    ctx = dataclasses.replace(
        ctx,
        accounts=three,
        settings=oracle_settings(
            ctx.settings, oracle_signer_db_urls={1: tampered_url(stack_settings, db)}
        ),
    )
    outcome = attest_next(ctx, pool.name)
    assert outcome.status == "flagged" and "signers disagree" in outcome.message
    assert ctx.client.call(ctx.registry.functions.latestEpoch(text_id(pool.name))) == 0
    row = db.execute(
        "SELECT state, tx_hash, flags FROM oracle_epochs WHERE pool = %s AND epoch = 1",
        (pool.name,),
    ).fetchone()
    assert row is not None and row[0] == "flagged" and row[1] is None
    assert any(f["check"] == "signers_disagree" for f in row[2])
    disagreeing = db.execute(
        "SELECT signer FROM oracle_signatures WHERE pool = %s AND epoch = 1 AND NOT agrees",
        (pool.name,),
    ).fetchall()
    assert disagreeing == [(ctx.accounts.oracles[1].address,)]
    # without review nothing moves
    assert attest_next(ctx, pool.name).status == "flagged"


def test_anomaly_guard_withholds_a_spiked_epoch(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=2)
    ctx = dataclasses.replace(
        ctx, settings=oracle_settings(ctx.settings, oracle_guard_min_history=1)
    )
    fill(db, pool, 2.1, revenue_per_kwh=150)
    # in day 3 the whole pool's revenue jumps sevenfold: within each device's plausible
    # bounds (the pool's maximum tariff), so no device is excluded: a pool-level anomaly
    for i, device in enumerate(pool.devices):
        insert_readings(
            db,
            device,
            T0 + timedelta(days=2.1),
            T0 + timedelta(days=3.05),
            offset=i * 7,
            revenue_per_kwh=1000,
        )
    assert attest_next(ctx, pool.name).status == "confirmed"
    assert attest_next(ctx, pool.name).status == "confirmed"
    withheld = attest_next(ctx, pool.name)
    assert withheld.status == "withheld", withheld.message
    assert "--force" in withheld.message
    pid = text_id(pool.name)
    assert ctx.client.call(ctx.registry.functions.latestEpoch(pid)) == 2
    row = db.execute(
        "SELECT state, flags FROM oracle_epochs WHERE pool = %s AND epoch = 3", (pool.name,)
    ).fetchone()
    assert row is not None and row[0] == "withheld"
    assert {f["check"] for f in row[1]} == {"revenue_deviation"}
    assert not db.execute(
        "SELECT 1 FROM oracle_signatures WHERE pool = %s AND epoch = 3", (pool.name,)
    ).fetchone()
    assert attest_next(ctx, pool.name).status == "withheld"  # still, until reviewed

    forced = attest_next(ctx, pool.name, force=True)
    assert forced.status == "confirmed", forced.message
    assert ctx.client.call(ctx.registry.functions.latestEpoch(pid)) == 3


def test_a_refusal_by_the_chain_is_decoded_and_flagged(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    """The database's share differs from the one registered on-chain: the registry refuses
    the investor amount, and the flag names the custom error."""
    pool = make_pool(stack_settings, db, "pv_plant", devices=1, share_bps=2_500)
    db.execute("UPDATE pools SET share_bps = 3000 WHERE name = %s", (pool.name,))
    fill(db, pool, 1.05)
    outcome = attest_next(ctx, pool.name)
    assert outcome.status == "flagged"
    row = db.execute(
        "SELECT flags FROM oracle_epochs WHERE pool = %s AND epoch = 1", (pool.name,)
    ).fetchone()
    assert row is not None
    assert any("InvestorAmountMismatch(" in f["detail"] for f in row[0]), row[0]
    assert ctx.client.call(ctx.registry.functions.latestEpoch(text_id(pool.name))) == 0
