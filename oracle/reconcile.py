"""What the chain says about an epoch in flight: already there (ours: confirmed; someone
else's: flagged), or attested under an oracle set that has changed since (signed again)."""

from __future__ import annotations

import logging

import psycopg

from gridshare.core.chain.attestation import Attestation
from gridshare.core.ids import text_id
from gridshare.core.timegrid import to_unix
from gridshare.oracle import metrics, submitter
from gridshare.oracle.context import OracleContext
from gridshare.oracle.store import EpochRow, EpochState
from gridshare.oracle.transitions import OracleError, log_epoch, move


def attestation_of(row: EpochRow) -> Attestation:
    return Attestation(
        pool_id=text_id(row.pool),
        epoch=row.epoch,
        period_start=to_unix(row.period_start),
        period_end=to_unix(row.period_end),
        energy_wh=row.energy_wh,
        revenue_minor=row.revenue_minor,
        investor_amount=row.investor_amount,
        device_count=row.device_count,
        leaves_root=bytes.fromhex(row.leaves_root.removeprefix("0x")),
    )


def reconcile_onchain(
    ctx: OracleContext, conn: psycopg.Connection, row: EpochRow
) -> EpochRow | None:
    """If the chain already holds this epoch, record it (ours) or flag it (someone else's)."""
    pool_id = text_id(row.pool)
    onchain = int(ctx.client.call(ctx.registry.functions.latestEpoch(pool_id)))
    if onchain < row.epoch - 1:
        raise OracleError(
            f"{row.pool}: the chain has epochs up to {onchain} but the database is at "
            f"{row.epoch - 1}; was the chain reset? (redeploy, or clear the oracle tables)"
        )
    if onchain < row.epoch:
        return None
    stored = ctx.client.call(ctx.registry.functions.attestation(pool_id, row.epoch))
    root = "0x" + bytes(stored[8]).hex()
    event = submitter.accepted_log(ctx.client, ctx.registry, pool_id, row.epoch, ctx.record.block)
    tx_hash = "0x" + bytes(event["transactionHash"]).hex() if event else row.tx_hash
    block = int(event["blockNumber"]) if event else None
    if root != row.leaves_root:
        return flag(conn, row, "chain_conflict", f"epoch on-chain has root {root}")
    gas = None
    if tx_hash and (rcpt := submitter.receipt(ctx.client, tx_hash)) is not None:
        gas = int(rcpt["gasUsed"])
    return confirmed(conn, row, tx_hash, block, gas)


def resign_if_stale(
    ctx: OracleContext, conn: psycopg.Connection, row: EpochRow, states: tuple[EpochState, ...]
) -> EpochRow:
    """An epoch in one of `states` whose digest no longer matches the registry (oracle set
    changed) goes back to computed under the current digest, to be signed again; others are
    returned as is."""
    if row.state not in states:
        return row
    digest = "0x" + attestation_of(row).digest(ctx.signing_context(row.pool)).hex()
    if digest == row.digest:
        return row
    log_epoch("oracle set changed; signing again", row.pool, row.epoch, old=row.digest, new=digest)
    return move(conn, row, EpochState.COMPUTED, digest=digest, signers=None, signatures=None)


def confirmed(
    conn: psycopg.Connection,
    row: EpochRow,
    tx_hash: str | None,
    block: int | None,
    gas: int | None,
) -> EpochRow:
    done = move(conn, row, EpochState.CONFIRMED, tx_hash=tx_hash, block_number=block, gas_used=gas)
    metrics.count(row.pool, EpochState.CONFIRMED)
    log_epoch("epoch confirmed", row.pool, row.epoch, tx_hash=tx_hash, block=block, gas_used=gas)
    return done


def flag(conn: psycopg.Connection, row: EpochRow, check_name: str, detail: str) -> EpochRow:
    """The chain refused the epoch or holds another one: flagged, for review."""
    flagged = move(conn, row, EpochState.FLAGGED, flags=[{"check": check_name, "detail": detail}])
    metrics.count(row.pool, EpochState.FLAGGED)
    log_epoch("epoch flagged", row.pool, row.epoch, level=logging.ERROR, reason=detail)
    return flagged
