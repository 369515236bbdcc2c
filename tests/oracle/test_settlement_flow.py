"""The oracle against the challenge window and oracle-set changes on the session stack: a
vetoed epoch is attested again; an epoch signed before the oracle set changed is signed
again by the new set and accepted; funding waits for finality."""

from __future__ import annotations

import psycopg

from gridshare.core.chain.servicing import Servicing
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.oracle import funding
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.compute import cutoff
from gridshare.oracle.context import OracleContext
from gridshare.oracle.periods import ensure_grid
from gridshare.oracle.signatures import collect_signatures, compute_with_signers
from gridshare.oracle.store import EpochState, load_epoch
from tests.oracle.conftest import fill, make_pool

VETOED, PENDING = 3, 1


def test_vetoed_epoch_is_attested_again(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=2)
    fill(db, pool, 2.05)
    pid = text_id(pool.name)
    registry = ctx.registry.functions
    assert attest_next(ctx, pool.name).status == "confirmed"
    assert attest_next(ctx, pool.name).status == "confirmed"
    first = load_epoch(db, pool.name, 1)
    assert first is not None
    Servicing(stack_settings, ctx.client).veto(pool.name, 1, "survey disagrees")
    assert ctx.client.call(registry.epochStatus(pid, 2)) == VETOED
    assert ctx.client.call(registry.latestEpoch(pid)) == 0

    again = attest_next(ctx, pool.name)
    assert again.status == "confirmed", again.message
    assert again.epoch == 1
    assert ctx.client.call(registry.epochStatus(pid, 1)) == PENDING
    resubmitted = load_epoch(db, pool.name, 1)
    assert resubmitted is not None
    # Same numbers, fresh signatures over a digest that names the veto.
    assert (resubmitted.revenue_minor, resubmitted.leaves_root) == (
        first.revenue_minor,
        first.leaves_root,
    )
    assert resubmitted.digest != first.digest
    assert attest_next(ctx, pool.name).epoch == 2
    assert ctx.client.call(registry.latestEpoch(pid)) == 2


def test_oracle_set_changed_mid_flight(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "pv_plant", devices=2)
    fill(db, pool, 1.05)
    registry = ctx.registry.functions
    original = list(ctx.client.call(registry.oracles()))
    threshold = ctx.threshold
    # Compute and sign epoch 1 without submitting it: in flight.
    ensure_grid(db, pool.name, ctx.settings.period_seconds)
    signed = compute_with_signers(ctx, db, pool.name, 1, cutoff(ctx, db), False)
    if signed.state is EpochState.COMPUTED:  # the first signers did not agree at once
        signed = collect_signatures(ctx, db, signed)
    assert signed.state is EpochState.SIGNED
    removed = sorted(signed.signers or [], key=lambda a: int(a, 16))[0]
    remaining = [a for a in original if a.lower() != removed.lower()]
    admin = ctx.accounts.admin
    try:
        ctx.client.transact(registry.setOracles(remaining, 3), admin)
        outcome = attest_next(ctx, pool.name)
        assert outcome.status == "confirmed", outcome.message
        row = load_epoch(db, pool.name, 1)
        assert row is not None and row.digest != signed.digest
        assert removed.lower() not in {s.lower() for s in row.signers or []}
    finally:
        ctx.client.transact(registry.setOracles(original, threshold), admin)


def test_fund_pays_only_what_is_final(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "battery_swap", devices=2)
    fill(db, pool, 1.05)
    assert attest_next(ctx, pool.name).status == "confirmed"
    early = funding.fund(ctx, pool.name)
    assert early.amount == 0 and early.tx_hash is None
    assert early.pending > 0
    assert early.next_final_at is not None
    ctx.client.increase_time(ctx.client.call(ctx.registry.functions.challengePeriod()))
    paid = funding.fund(ctx, pool.name)
    assert paid.amount == early.pending and paid.pending == 0
