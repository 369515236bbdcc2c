"""Step four: wait for the persisted transaction to be mined, finding it again after a
restart: re-broadcast the same bytes if the node lost it, build a new one only if its nonce
went to another transaction."""

from __future__ import annotations

import psycopg

from gridshare.oracle import submitter
from gridshare.oracle.context import OracleContext
from gridshare.oracle.reconcile import confirmed, flag, reconcile_onchain, resign_if_stale
from gridshare.oracle.store import EpochRow, EpochState
from gridshare.oracle.submit import submit
from gridshare.oracle.transitions import log_epoch, move


def confirm(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow) -> EpochRow:
    """The epoch confirmed, flagged, back to computed (oracle set changed), or as it was
    (its transaction still pending)."""
    assert row.tx_hash and row.tx_raw is not None and row.tx_nonce is not None
    if submitter.receipt(ctx.client, row.tx_hash) is None:
        if (reconciled := reconcile_onchain(ctx, conn, row)) is not None:
            return reconciled
        if submitter.find(ctx.client, row.tx_hash) is None:
            if submitter.nonce_used(ctx.client, row.submitter or "", row.tx_nonce):
                log_epoch("attestation tx replaced; signing a new one", row.pool, row.epoch)
                fresh = move(conn, row, EpochState.SIGNED)
                return confirm(ctx, conn, submit(ctx, conn, fresh))
            log_epoch("re-broadcasting the recorded attestation tx", row.pool, row.epoch)
            submitter.broadcast(
                ctx.client, submitter.SignedTx(row.tx_hash, row.tx_nonce, row.tx_raw)
            )
    wait = ctx.settings.oracle_receipt_timeout_seconds
    mined = submitter.wait_mined(ctx.client, row.tx_hash, wait)
    if mined is None:
        log_epoch("attestation tx still pending", row.pool, row.epoch, tx_hash=row.tx_hash)
        return row
    if not mined.ok:
        if (reconciled := reconcile_onchain(ctx, conn, row)) is not None:
            return reconciled
        ctx.refresh()
        if (fresh := resign_if_stale(ctx, conn, row, (EpochState.SUBMITTED,))) is not row:
            return fresh
        return flag(conn, row, "chain_refused", mined.revert)
    return confirmed(conn, row, mined.tx_hash, mined.block_number, mined.gas_used)
