"""The epoch state machine's moves, in one place: which state may follow which, the one
function that makes a move, and the hook tests use to stop the process after a step.

    computed -> signed -> submitted -> confirmed
        \\-> withheld (anomaly guard; `oracle attest --force` after review)
        \\-> flagged  (signers disagree, or the chain refused it)

plus the ways back: an epoch whose digest went stale (the oracle set changed) returns to
computed to be signed again, and a submitted epoch whose nonce went to another transaction
returns to signed. (Re)computation itself is `store.save_computed`: it writes a computed or
withheld row over a computed, withheld or flagged one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg

from gridshare.core.errors import GridshareError
from gridshare.oracle.store import EpochRow, EpochState, load_epoch, transition

# the epoch lines keep the logger name they have always had: operators filter on it
log = logging.getLogger("gridshare.oracle.aggregator")

S = EpochState
TRANSITIONS: dict[EpochState, frozenset[EpochState]] = {
    S.COMPUTED: frozenset({S.SIGNED, S.FLAGGED, S.COMPUTED}),
    S.SIGNED: frozenset({S.SUBMITTED, S.CONFIRMED, S.FLAGGED, S.COMPUTED}),
    S.SUBMITTED: frozenset({S.CONFIRMED, S.FLAGGED, S.SIGNED, S.COMPUTED}),
    S.CONFIRMED: frozenset(),
    S.WITHHELD: frozenset(),  # only recomputed, with --force
    S.FLAGGED: frozenset(),  # likewise
}
STEPS = ("computed", "signed", "broadcast")  # what `after_step` hooks are told

_step_hooks: list[Callable[[str], None]] = []


class OracleError(GridshareError):
    """The oracle cannot go on with a pool (the message says why and what to do)."""


def move(conn: psycopg.Connection, row: EpochRow, to: EpochState, **columns: Any) -> EpochRow:
    """Take the epoch from the state `row` holds to `to` (setting `columns`), as one UPDATE
    guarded by that state; the row as stored afterwards."""
    if to not in TRANSITIONS[row.state]:
        raise OracleError(f"{row.pool}: epoch {row.epoch} cannot go from {row.state} to {to}")
    transition(conn, row.pool, row.epoch, (row.state,), to, **columns)
    return reload(conn, row.pool, row.epoch)


def reload(conn: psycopg.Connection, pool: str, epoch: int) -> EpochRow:
    """The epoch's row, which the caller knows exists."""
    row = load_epoch(conn, pool, epoch)
    assert row is not None
    return row


def after_step(hook: Callable[[str], None]) -> None:
    """Call `hook(step)` right after each step (STEPS) is committed: tests install one that
    kills the process there, to prove that a restart resumes it."""
    _step_hooks.append(hook)


def reached(step: str) -> None:
    for hook in _step_hooks:
        hook(step)


def log_epoch(msg: str, pool: str, epoch: int, level: int = logging.INFO, **fields: object) -> None:
    log.log(level, msg, extra={"fields": {"pool": pool, "epoch": epoch, **fields}})
