"""The meter rule of a settlement period, written once (the oracle's SQL is tested against it;
the auditor and the API's income buckets use it).

A device's meters at a period bound: the reading exactly on the bound is the bound's value;
between two readings, linear interpolation in device time, rounded down (in microseconds, as
the oracle's SQL computes it); before the first reading the first value holds, after the last
reading the last value holds; a meter that went down between the two readings holds the
earlier value.

A period's figure starts from the values the previous period *used* as its end values (its
leaf, committed on-chain) or, for a device's first period, from its first reading ever: the
figure is max(meter(E), start) - start, and meter(S) - start is the part of it that belongs
to earlier periods (the adjustment: readings that arrived late). So nothing is lost or
counted twice, and a meter that went below its start value earns nothing until it is back
above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gridshare.core.timegrid import micros

METER_NAMES = ("energy", "revenue", "sessions")


@dataclass(frozen=True)
class Reading:
    """One reading's position and meters (sessions 0 where a device has none)."""

    time: datetime
    seq: int
    energy: int
    revenue: int
    sessions: int

    def meter(self, name: str) -> int:
        return int(getattr(self, name))


@dataclass(frozen=True)
class Meters:
    """The three cumulative meters at one point."""

    energy: int
    revenue: int
    sessions: int

    def meter(self, name: str) -> int:
        return int(getattr(self, name))


ZERO = Meters(0, 0, 0)


def value_at(
    before: Reading | None, after: Reading | None, bound: datetime, name: str
) -> int | None:
    """One meter at `bound` from the last reading before it and the first on or after it."""
    if after is not None and (before is None or after.time == bound):
        return after.meter(name)
    if before is None:
        return None
    v0 = before.meter(name)
    if after is None or after.meter(name) < v0:
        return v0
    v1 = after.meter(name)
    t0 = micros(before.time)
    return v0 + (v1 - v0) * (micros(bound) - t0) // (micros(after.time) - t0)


def meters_at(before: Reading | None, after: Reading | None, bound: datetime) -> Meters | None:
    """All three meters at `bound`, or None without any reading on either side."""
    values = [value_at(before, after, bound, n) for n in METER_NAMES]
    if values[0] is None:
        return None
    return Meters(*(int(v or 0) for v in values))


def around(readings: Sequence[Reading], bound: datetime) -> tuple[Reading | None, Reading | None]:
    """The last reading before `bound` and the first on or after it (readings in (time, seq)
    order)."""
    before = after = None
    for r in readings:
        if r.time < bound:
            before = r
        elif after is None:
            after = r
    return before, after


@dataclass(frozen=True)
class Bounds:
    """The readings that determine a device's figures for [start, end): around each bound,
    and its first reading ever (used when no previous period's leaf gives the start)."""

    s0: Reading | None
    s1: Reading | None
    e0: Reading | None
    e1: Reading | None
    first: Reading | None

    @classmethod
    def of(cls, readings: Sequence[Reading], start: datetime, end: datetime) -> Bounds:
        s0, s1 = around(readings, start)
        e0, e1 = around(readings, end)
        return cls(s0, s1, e0, e1, readings[0] if readings else None)

    def readings(self) -> list[Reading]:
        """Each determining reading once."""
        seen: dict[int, Reading] = {}
        for r in (self.first, self.s0, self.s1, self.e0, self.e1):
            if r is not None:
                seen.setdefault(r.seq, r)
        return list(seen.values())


@dataclass(frozen=True)
class PeriodFigures:
    """A device's figures for one period by the meter rule."""

    start: Meters  # values used at the start: the previous leaf's end values, or first reading
    end: Meters  # values used at the end: never below the start values
    adjustment_energy: int  # meter(S) known now minus the start value used
    adjustment_revenue: int
    first_seq: int  # first reading in the period (0: none)
    last_seq: int  # last reading in the period (0: none)

    @property
    def energy(self) -> int:
        return self.end.energy - self.start.energy

    @property
    def revenue(self) -> int:
        return self.end.revenue - self.start.revenue

    @property
    def sessions(self) -> int:
        return self.end.sessions - self.start.sessions


def period_figures(
    bounds: Bounds, start: datetime, end: datetime, previous_end: Meters | None
) -> PeriodFigures | None:
    """The device's figures for [start, end), starting from `previous_end` (the values the
    previous period used, None in the device's first period). None: the device has no leaf
    (first period and no reading before `end`)."""
    if previous_end is None and bounds.e0 is None:
        return None
    if previous_end is not None:
        used_start = previous_end
    else:
        first = bounds.first if bounds.s0 is not None else bounds.s1
        assert first is not None
        used_start = Meters(first.energy, first.revenue, first.sessions)
    raw_s = meters_at(bounds.s0, bounds.s1, start) or used_start
    raw_e = meters_at(bounds.e0, bounds.e1, end) or used_start
    used_end = Meters(*(max(raw_e.meter(n), used_start.meter(n)) for n in METER_NAMES))
    return PeriodFigures(
        start=used_start,
        end=used_end,
        adjustment_energy=raw_s.energy - used_start.energy,
        adjustment_revenue=raw_s.revenue - used_start.revenue,
        first_seq=bounds.s1.seq if bounds.s1 is not None and bounds.s1.time < end else 0,
        last_seq=bounds.e0.seq if bounds.e0 is not None and bounds.e0.time >= start else 0,
    )


def bucket_values(
    readings: Sequence[Reading], edges: Sequence[datetime], name: str, floor: int, ceiling: int
) -> list[int]:
    """One meter at each bucket edge, held within [floor, ceiling] (an attested period's used
    start and end values), so the buckets of a period add up to its attested figure."""
    out = []
    for edge in edges:
        before, after = around(readings, edge)
        value = value_at(before, after, edge, name)
        out.append(min(max(floor if value is None else value, floor), ceiling))
    return out
