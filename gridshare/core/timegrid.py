"""Time on the settlement grid, written once: exact microseconds since the Unix epoch and
alignment to a step, so the oracle's period bounds and the API's income buckets can never
disagree on where a period starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (exact, unlike float timestamps)."""
    return (moment - UNIX_EPOCH) // timedelta(microseconds=1)


def to_unix(moment: datetime) -> int:
    """Whole seconds since the Unix epoch (period bounds are whole seconds)."""
    return (moment - UNIX_EPOCH) // timedelta(seconds=1)


def align(moment: datetime, step: timedelta, up: bool = False) -> datetime:
    """`moment` snapped to a multiple of `step` since the Unix epoch: down, or up."""
    step_us = step // timedelta(microseconds=1)
    us = micros(moment)
    snapped = us - us % step_us
    if up and snapped < us:
        snapped += step_us
    return UNIX_EPOCH + timedelta(microseconds=snapped)
