"""The epoch state machine's table of moves (pure logic: no database is reached when a move
is refused)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gridshare.oracle.machine import Outcome, Status
from gridshare.oracle.store import EpochState
from gridshare.oracle.transitions import TRANSITIONS, OracleError, move


def test_every_state_has_its_moves() -> None:
    assert set(TRANSITIONS) == set(EpochState)
    assert TRANSITIONS[EpochState.CONFIRMED] == frozenset()
    assert EpochState.SIGNED in TRANSITIONS[EpochState.COMPUTED]
    assert EpochState.SUBMITTED in TRANSITIONS[EpochState.SIGNED]
    assert EpochState.CONFIRMED in TRANSITIONS[EpochState.SUBMITTED]


@pytest.mark.parametrize(
    ("state", "to"),
    [
        (EpochState.CONFIRMED, EpochState.SIGNED),
        (EpochState.COMPUTED, EpochState.SUBMITTED),
        (EpochState.WITHHELD, EpochState.SIGNED),
    ],
)
def test_a_move_outside_the_table_is_refused(state: EpochState, to: EpochState) -> None:
    row = SimpleNamespace(pool="pv-plant-1", epoch=3, state=state)
    with pytest.raises(OracleError, match=f"epoch 3 cannot go from {state} to {to}"):
        move(None, row, to)  # type: ignore[arg-type]


def test_statuses_keep_their_texts() -> None:
    assert [s.value for s in Status] == [
        "confirmed",
        "waiting",
        "nothing",
        "withheld",
        "flagged",
        "pending",
        "busy",
    ]
    assert Outcome("p", 1, Status.CONFIRMED, "").progressed
    assert not Outcome("p", 1, Status.PENDING, "").progressed
