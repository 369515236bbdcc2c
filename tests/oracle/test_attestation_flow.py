"""End to end on the session stack: telemetry in PostgreSQL -> epochs attested on Anvil."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import psycopg

from gridshare.core.chain.accounts import load_accounts
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.oracle import funding
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.oracle.proofs import device_proof
from gridshare.oracle.service import run_round
from tests.oracle.conftest import T0, fill, make_pool

EPOCHS = 3


def reference_value(rows: list[tuple[datetime, int]], bound: datetime) -> int:
    """SPEC §7 by hand: on a bound, that reading; between, linear interpolation (floor);
    before the first or after the last reading, hold."""
    before = [r for r in rows if r[0] < bound]
    after = [r for r in rows if r[0] >= bound]
    if after and after[0][0] == bound:
        return after[0][1]
    if not before:
        return after[0][1]
    if not after:
        return before[-1][1]
    (t0, v0), (t1, v1) = before[-1], after[0]
    return v0 + (v1 - v0) * ((bound - t0) // timedelta(microseconds=1)) // (
        (t1 - t0) // timedelta(microseconds=1)
    )


def test_three_pools_three_days(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pools = [
        make_pool(stack_settings, db, kind, devices=3)
        for kind in ("charging_pile", "pv_plant", "battery_swap")
    ]
    for pool in pools:
        fill(db, pool, EPOCHS + 0.1)  # the extra readings close the last period
    run_round(ctx, threading.Event())

    for pool in pools:
        pid = text_id(pool.name)
        assert ctx.client.call(ctx.registry.functions.latestEpoch(pid)) == EPOCHS
        for epoch in range(1, EPOCHS + 1):
            start, end = T0 + timedelta(days=epoch - 1), T0 + timedelta(days=epoch)
            row = db.execute(
                "SELECT state, energy_wh, revenue_minor, investor_amount, device_count,"
                " leaves_root FROM oracle_epochs WHERE pool = %s AND epoch = %s",
                (pool.name, epoch),
            ).fetchone()
            assert row is not None and row[0] == "confirmed"
            energy = revenue = 0
            for device_id in pool.devices:
                series = db.execute(
                    "SELECT time, energy_wh_total, revenue_minor_total FROM telemetry"
                    " WHERE device_id = %s ORDER BY time",
                    (device_id,),
                ).fetchall()
                e = [(t, v) for t, v, _ in series]
                r = [(t, v) for t, _, v in series]
                energy += reference_value(e, end) - reference_value(e, start)
                revenue += reference_value(r, end) - reference_value(r, start)
            assert (int(row[1]), int(row[2])) == (energy, revenue)
            assert int(row[3]) == revenue * pool.share_bps
            assert row[4] == len(pool.devices)
            onchain = ctx.client.call(ctx.registry.functions.attestation(pid, epoch))
            assert onchain[2:9] == (
                int(start.timestamp()),
                int(end.timestamp()),
                energy,
                revenue,
                revenue * pool.share_bps,
                len(pool.devices),
                onchain[8],
            )
            assert "0x" + bytes(onchain[8]).hex() == row[5]

            for device_id in pool.devices:
                proof = device_proof(db, pool.name, epoch, device_id)
                assert proof is not None
                assert ctx.client.call(
                    ctx.registry.functions.verifyLeaf(pid, epoch, proof.leaf_hash, proof.proof)
                )
                tampered = proof.leaf.__class__(
                    **{**proof.leaf.__dict__, "energy_wh": proof.leaf.energy_wh + 1}
                )
                assert not ctx.client.call(
                    ctx.registry.functions.verifyLeaf(pid, epoch, tampered.leaf_hash(), proof.proof)
                )

    # nothing more is closed: a further step says so and changes nothing
    outcome = attest_next(ctx, pools[0].name)
    assert outcome.status == "waiting" and "nothing to do" in outcome.message

    # the operator pays what is owed, an investor claims a share
    pool = pools[0]
    pid = text_id(pool.name)
    assert ctx.client.call(ctx.registry.functions.owed(pid), "pending") == 0
    waiting = funding.fund(ctx, pool.name)  # nothing final yet: says when it will be
    assert waiting.amount == 0 and waiting.pending > 0 and waiting.next_final_at
    ctx.client.increase_time(ctx.client.call(ctx.registry.functions.challengePeriod()))
    owed = ctx.client.call(ctx.registry.functions.owed(pid))
    assert owed == waiting.pending
    paid = funding.fund(ctx, pool.name)
    assert paid.amount == owed
    assert ctx.client.call(ctx.registry.functions.owed(pid)) == 0
    assert funding.fund(ctx, pool.name).amount == 0
    holder = load_accounts(stack_settings).investors[1]
    token = ctx.client.contract(
        "RevenueShareToken", ctx.client.call(ctx.registry.functions.pool(pid))[0]
    )
    assert ctx.client.call(token.functions.totalFunded()) == owed
    claimable = ctx.client.call(token.functions.claimable(holder.address))
    assert claimable > 0
    assert funding.claim(ctx, pool.name, holder).amount == claimable
    assert ctx.client.call(token.functions.claimable(holder.address)) == 0
