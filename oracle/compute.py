"""Step one of an epoch: compute its figures, put them through the anomaly guard and store
them as computed (or withheld)."""

from __future__ import annotations

import logging
from datetime import datetime

import psycopg

from gridshare.oracle import guard, metrics
from gridshare.oracle.context import OracleContext
from gridshare.oracle.figures import ComputedEpoch, compute_epoch
from gridshare.oracle.periods import ensure_grid
from gridshare.oracle.provenance import ProvenanceRefused
from gridshare.oracle.store import EpochRow, EpochState, data_cutoff_of, save_computed
from gridshare.oracle.transitions import OracleError, log_epoch, reached, reload


def cutoff(ctx: OracleContext, conn: psycopg.Connection) -> datetime:
    """Readings received after this moment (database clock) wait for the next epoch."""
    row = conn.execute(
        "SELECT now() - make_interval(secs => %s)", (ctx.settings.oracle_cutoff_margin_seconds,)
    ).fetchone()
    assert row is not None
    return row[0]


def compute(
    ctx: OracleContext,
    conn: psycopg.Connection,
    pool: str,
    epoch: int,
    data_cutoff: datetime | None = None,
) -> ComputedEpoch:
    """The aggregator's own computation of the epoch (`data_cutoff`: now, by default)."""
    grid = ensure_grid(conn, pool, ctx.settings.period_seconds)
    assert grid is not None
    data_cutoff = data_cutoff or cutoff(ctx, conn)
    prev_cutoff = data_cutoff_of(conn, pool, epoch - 1) if epoch > 1 else None
    try:
        return compute_epoch(conn, grid, epoch, data_cutoff, prev_cutoff, ctx.settings, ctx.chain)
    except ProvenanceRefused as exc:
        raise OracleError(f"{pool}: epoch {epoch} cannot be computed: {exc}") from exc


def save(
    ctx: OracleContext, conn: psycopg.Connection, computed: ComputedEpoch, force: bool
) -> EpochRow:
    """Store the computation: computed, or withheld when the guard objects (unless forced)."""
    flags = guard.check(conn, computed, ctx.settings)
    state = EpochState.WITHHELD if flags and not force else EpochState.COMPUTED
    digest = computed.attestation.digest(ctx.signing_context(computed.pool))
    notes = [dict(f, forced=force) for f in flags]
    save_computed(conn, computed, digest, state, notes, forced=force and bool(flags))
    a = computed.attestation
    log_epoch(
        "epoch computed" if state is EpochState.COMPUTED else "epoch withheld by anomaly guard",
        computed.pool,
        computed.epoch,
        level=logging.INFO if state is EpochState.COMPUTED else logging.WARNING,
        energy_wh=a.energy_wh,
        revenue_minor=a.revenue_minor,
        investor_amount=a.investor_amount,
        devices=a.device_count,
        silent=computed.silent_devices,
        adjustment_energy_wh=computed.adjustment_energy_wh,
        root="0x" + a.leaves_root.hex(),
        flags=flags,
    )
    metrics.count(computed.pool, state)
    reached("computed")
    return reload(conn, computed.pool, computed.epoch)
