"""One step of a pool's attestation: the next closed epoch taken as far as it can go.

Each call first resumes whatever epoch a previous (possibly killed) run left in flight
(`machine.advance`); otherwise it computes the pool's next epoch once it is closed.
"""

from __future__ import annotations

import logging

import psycopg

from gridshare.core import db
from gridshare.oracle import challenges
from gridshare.oracle.compute import cutoff
from gridshare.oracle.context import OracleContext
from gridshare.oracle.machine import Outcome, Status, advance
from gridshare.oracle.periods import ensure_grid, watermark
from gridshare.oracle.signatures import compute_with_signers
from gridshare.oracle.store import EpochState, latest_epoch
from gridshare.oracle.transitions import OracleError

log = logging.getLogger(__name__)


def attest_next(ctx: OracleContext, pool: str, force: bool = False) -> Outcome:
    """Take the pool's next epoch as far as possible (one epoch at most)."""
    with db.connect(ctx.settings, autocommit=True) as conn:
        locked = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext('gridshare-oracle:' || %s))", (pool,)
        ).fetchone()
        if not (locked and locked[0]):
            return Outcome(
                pool, None, Status.BUSY, f"{pool}: another oracle process is attesting it"
            )
        try:
            ctx.refresh()
            ctx.sync_pool_terms(conn, pool)
            challenges.reopen_vetoed(ctx, conn, pool)
            return _step(ctx, conn, pool, force)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('gridshare-oracle:' || %s))", (pool,))


def _step(ctx: OracleContext, conn: psycopg.Connection, pool: str, force: bool) -> Outcome:
    known = conn.execute("SELECT ephemeral FROM pools WHERE name = %s", (pool,)).fetchone()
    if known is None:
        raise OracleError(f"pool {pool} is unknown; provision it first")
    if known[0]:
        raise OracleError(f"pool {pool} holds ephemeral simulator devices; it is never attested")
    row = latest_epoch(conn, pool)
    if row is not None and row.state is not EpochState.CONFIRMED:
        return advance(ctx, conn, row, force)
    epoch = row.epoch + 1 if row else 1
    grid = ensure_grid(conn, pool, ctx.settings.period_seconds)
    if grid is None:
        return Outcome(pool, None, Status.NOTHING, f"{pool}: no readings yet, nothing to attest")
    if grid.period_seconds != ctx.settings.period_seconds:
        log.warning(
            "pool keeps the period length it started with",
            extra={"fields": {"pool": pool, "period_seconds": grid.period_seconds}},
        )
    start, end = grid.bounds(epoch)
    data_cutoff = cutoff(ctx, conn)
    mark = watermark(conn, pool, ctx.settings.oracle_silent_allowance_seconds, data_cutoff)
    if mark.at is None or mark.at < end:
        return Outcome(
            pool,
            epoch,
            Status.WAITING,
            f"{pool}: epoch {epoch} [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC is not "
            f"closed yet (watermark {mark.at:%Y-%m-%d %H:%M:%S} UTC); nothing to do"
            if mark.at
            else f"{pool}: epoch {epoch} is not closed yet; nothing to do",
        )
    row = compute_with_signers(ctx, conn, pool, epoch, data_cutoff, force)
    return advance(ctx, conn, row, force)
