"""Drive one epoch from its persisted state as far as it goes, and say what happened.

The steps run in order, each at most once per call: a withheld or flagged epoch is
recomputed only when forced; then computed -> signed (`signatures`) -> submitted (`submit`)
-> confirmed (`confirm`). Every move is one of `transitions.TRANSITIONS`, committed before
the next step starts, so a process killed anywhere resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import psycopg

from gridshare.oracle.compute import compute, save
from gridshare.oracle.confirm import confirm
from gridshare.oracle.context import OracleContext
from gridshare.oracle.reconcile import resign_if_stale
from gridshare.oracle.signatures import collect_signatures
from gridshare.oracle.store import EpochRow, EpochState
from gridshare.oracle.submit import submit


class Status(StrEnum):
    """What one step did (the texts are those of the CLI, the logs and the API)."""

    CONFIRMED = "confirmed"  # an epoch is on-chain: the pool made progress
    WAITING = "waiting"  # the next epoch is not closed yet
    NOTHING = "nothing"  # the pool has no readings yet
    WITHHELD = "withheld"  # the anomaly guard holds the epoch for review
    FLAGGED = "flagged"  # signers disagree, or the chain refused it
    PENDING = "pending"  # in flight: its transaction is not mined yet
    BUSY = "busy"  # another oracle process holds the pool


@dataclass(frozen=True)
class Outcome:
    """What one step did to the pool's epoch (None: no epoch taken up), in one line."""

    pool: str
    epoch: int | None
    status: Status
    message: str

    @property
    def progressed(self) -> bool:
        return self.status is Status.CONFIRMED


def advance(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow, force: bool) -> Outcome:
    """Resume an epoch from its persisted state."""
    if row.state in (EpochState.WITHHELD, EpochState.FLAGGED):
        if not force:
            reasons = "; ".join(str(f.get("detail", f)) for f in row.flags[-3:])
            return _outcome(
                row,
                Status(row.state.value),
                f"is {row.state.value} ({reasons}); review it, "
                f"then run `gridshare oracle attest --pool {row.pool} --force`",
            )
        row = save(ctx, conn, compute(ctx, conn, row.pool, row.epoch), force=True)
    row = resign_if_stale(ctx, conn, row, (EpochState.COMPUTED, EpochState.SIGNED))
    if row.state is EpochState.COMPUTED:
        row = collect_signatures(ctx, conn, row)
        if row.state is EpochState.FLAGGED:
            return _outcome(row, Status.FLAGGED, "flagged: signers disagree, not submitted")
    if row.state is EpochState.SIGNED:
        row = submit(ctx, conn, row)
    if row.state is EpochState.SUBMITTED:
        row = confirm(ctx, conn, row)
    if row.state is EpochState.CONFIRMED:
        return _outcome(
            row,
            Status.CONFIRMED,
            f"attested in block {row.block_number} (tx {row.tx_hash}): revenue "
            f"{row.revenue_minor} cents, investors {row.investor_amount} units, "
            f"{row.device_count} devices",
        )
    if row.state is EpochState.FLAGGED:
        return _outcome(row, Status.FLAGGED, "flagged")
    return _outcome(row, Status.PENDING, f"is {row.state.value}")


def _outcome(row: EpochRow, status: Status, what: str) -> Outcome:
    """`pool: epoch N <what>`, the line every epoch outcome starts with."""
    return Outcome(row.pool, row.epoch, status, f"{row.pool}: epoch {row.epoch} {what}")
