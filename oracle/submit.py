"""Step three: sign the attestation transaction, commit it to the database, then broadcast
it (so a restart finds the very transaction again)."""

from __future__ import annotations

import psycopg

from gridshare.core.errors import ContractRevert
from gridshare.oracle import metrics, submitter
from gridshare.oracle.context import OracleContext
from gridshare.oracle.reconcile import attestation_of, flag, reconcile_onchain
from gridshare.oracle.store import EpochRow, EpochState
from gridshare.oracle.transitions import log_epoch, move, reached


def submit(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow) -> EpochRow:
    """Check the chain, sign the transaction, persist it, then broadcast it."""
    if (reconciled := reconcile_onchain(ctx, conn, row)) is not None:
        return reconciled
    signatures = [bytes.fromhex(s.removeprefix("0x")) for s in row.signatures or []]
    try:
        tx = submitter.build_submit(
            ctx.client, ctx.registry, attestation_of(row), signatures, ctx.submitter
        )
    except ContractRevert as exc:
        return flag(conn, row, "chain_refused", str(exc))
    submitted = move(
        conn,
        row,
        EpochState.SUBMITTED,
        tx_hash=tx.tx_hash,
        tx_nonce=tx.nonce,
        tx_raw=tx.raw,
        submitter=ctx.submitter.address,
    )
    submitter.broadcast(ctx.client, tx)
    metrics.count(row.pool, EpochState.SUBMITTED)
    log_epoch("attestation broadcast", row.pool, row.epoch, tx_hash=tx.tx_hash, nonce=tx.nonce)
    reached("broadcast")
    return submitted
