"""What the challenge window asks of the oracle: notice vetoed epochs and attest them again.

A veto voids an epoch and every later one of the pool on-chain (the registry's latest epoch
goes back). The oracle's rows from the vetoed epoch on are then dropped (their leaves and
signatures with them, after a log line naming each digest), so the next step computes the
epoch afresh, with the data it has now, and the usual path signs and submits it again
(the pool's veto count is part of the digest, so fresh signatures are needed).
"""

from __future__ import annotations

import logging

import psycopg

from gridshare.core.ids import text_id
from gridshare.oracle.context import OracleContext

log = logging.getLogger(__name__)
STATUS_VETOED = 3


def vetoed_from(ctx: OracleContext, conn: psycopg.Connection, pool: str) -> int | None:
    """The first of our epochs the registry holds as vetoed, if any."""
    pid = text_id(pool)
    onchain = int(ctx.client.call(ctx.registry.functions.latestEpoch(pid)))
    rows = conn.execute(
        "SELECT epoch FROM oracle_epochs WHERE pool = %s AND epoch > %s ORDER BY epoch",
        (pool, onchain),
    ).fetchall()
    for (epoch,) in rows:
        status = int(ctx.client.call(ctx.registry.functions.epochStatus(pid, epoch)))
        if status == STATUS_VETOED:
            return int(epoch)
    return None


def reopen_vetoed(ctx: OracleContext, conn: psycopg.Connection, pool: str) -> int | None:
    """Drop our rows from the first vetoed epoch on; returns that epoch (None: no veto)."""
    first = vetoed_from(ctx, conn, pool)
    if first is None:
        return None
    with conn.transaction():
        dropped = conn.execute(
            "DELETE FROM oracle_epochs WHERE pool = %s AND epoch >= %s"
            " RETURNING epoch, state, digest, tx_hash",
            (pool, first),
        ).fetchall()
    for epoch, state, digest, tx_hash in sorted(dropped):
        log.warning(
            "epoch vetoed on-chain; attesting it again",
            extra={
                "fields": {
                    "pool": pool,
                    "epoch": epoch,
                    "was": state,
                    "digest": digest,
                    "tx_hash": tx_hash,
                }
            },
        )
    return first
