"""Which readings of a batch are new, duplicates, conflicting, or break the meter rules.

Pure logic over the batch and the stored neighbours the writer fetched under the devices'
row locks, so the rules are testable on their own. Readings can arrive out of order
(device replay, broker redelivery), so each reading is compared with its neighbours *by
seq*: no cumulative meter may be lower than at the nearest lower seq, nor higher than at the
nearest higher seq, whether those neighbours are stored or earlier in the same batch; and no
meter may rise between neighbours faster than the device's rated capacity allows over the
device time between them (`Capacity`).

A reading for a seq already taken is a duplicate when its signed bytes are the stored ones
(a redelivered copy), and conflicting when they differ: the device signed two different
readings with one seq (a cloned or tampered unit), which is evidence to keep, not to drop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import NamedTuple

from gridshare.core.payloads import Telemetry

METERS = ("energy_wh_total", "revenue_minor_total", "sessions_total")  # Point's fields 1..3


class Point(NamedTuple):
    """A reading's seq and cumulative meters (sessions_total is None for PV plants). Named
    tuples: one per reading and per stored neighbour, made cheaply."""

    seq: int
    energy_wh_total: int | None
    revenue_minor_total: int | None
    sessions_total: int | None
    at: float | None = None  # device time (Unix seconds)

    @classmethod
    def of(cls, reading: Telemetry) -> Point:
        return cls(
            reading.seq,
            reading.energy_wh_total,
            reading.revenue_minor_total,
            reading.sessions_total,
            reading.ts.timestamp(),
        )


class Stored(NamedTuple):
    """What the database holds around one reading of the batch."""

    duplicate: bool = False  # a reading with this (device_id, seq) is stored
    before: Point | None = None  # stored reading with the nearest lower seq
    after: Point | None = None  # stored reading with the nearest higher seq
    signed: bytes = b""  # the stored duplicate's signed bytes (empty: stored without them)


class Capacity(NamedTuple):
    """How fast a device's meters can rise: energy at most rated power x (elapsed device
    time + slack) x margin, revenue at most that energy at the pool's maximum tariff. The
    slack covers clock jitter and revenue booked in bursts (a swap fee, a session fee)."""

    rated_power_w: int
    max_tariff_minor_per_kwh: int
    margin: float = 1.5
    slack_seconds: float = 900.0

    def problem(self, earlier: Point, later: Point) -> str | None:
        """Why the rise from `earlier` to `later` (by seq) is beyond capacity, or None."""
        if earlier.at is None or later.at is None:
            return None
        seconds = max(0.0, later.at - earlier.at)
        max_wh = self.rated_power_w * (seconds + self.slack_seconds) / 3600.0 * self.margin
        span = f"from seq {earlier.seq} to {later.seq} in {seconds:.0f} s"
        if earlier.energy_wh_total is not None and later.energy_wh_total is not None:
            energy = later.energy_wh_total - earlier.energy_wh_total
            if energy > max_wh:
                return (
                    f"energy_wh_total rose {energy} Wh {span}; rated {self.rated_power_w} W"
                    f" allows {max_wh:.0f}"
                )
        if earlier.revenue_minor_total is not None and later.revenue_minor_total is not None:
            revenue = later.revenue_minor_total - earlier.revenue_minor_total
            max_revenue = max_wh * self.max_tariff_minor_per_kwh / 1000.0
            if revenue > max_revenue:
                return (
                    f"revenue_minor_total rose {revenue} {span}; {max_wh:.0f} Wh at"
                    f" {self.max_tariff_minor_per_kwh}/kWh allows {max_revenue:.0f}"
                )
        return None


@dataclass
class Decision:
    accepted: list[int]  # indexes into the batch's readings, in arrival order
    duplicates: list[int]
    regressions: dict[int, str]  # index -> detail
    conflicts: dict[int, str] = dataclass_field(default_factory=dict)  # index -> detail
    implausible: dict[int, str] = dataclass_field(default_factory=dict)  # index -> detail


def decide(
    readings: list[Telemetry],
    stored: list[Stored],
    signed: Sequence[bytes] = (),
    capacity: Mapping[str, Capacity] | None = None,
) -> Decision:
    """Sort each device's readings by seq and keep those consistent with their neighbours.

    `signed[i]` are reading i's signed bytes (none given: copies are never told apart);
    `capacity` bounds each device's meters (a device without an entry is not bounded)."""
    by_device: dict[str, list[int]] = defaultdict(list)
    for index, reading in enumerate(readings):
        by_device[reading.device_id].append(index)
    decision = Decision([], [], {})
    for device_id, indexes in by_device.items():
        indexes.sort(key=lambda i: readings[i].seq)  # stable: equal seqs keep arrival order
        bound = capacity.get(device_id) if capacity else None
        taken: Point | None = None
        taken_index = -1
        for index in indexes:
            reading, around = readings[index], stored[index]
            if around.duplicate or (taken is not None and taken.seq == reading.seq):
                theirs = around.signed if around.duplicate else _bytes(signed, taken_index)
                ours = _bytes(signed, index)
                if theirs and ours and theirs != ours:
                    where = "stored" if around.duplicate else "earlier in the batch"
                    decision.conflicts[index] = (
                        f"seq {reading.seq} is {where} with other signed bytes"
                    )
                else:
                    decision.duplicates.append(index)
                continue
            before = around.before
            if taken is not None and (before is None or taken.seq > before.seq):
                before = taken
            point = Point.of(reading)
            problem = regression(point, before, around.after)
            if problem:
                decision.regressions[index] = problem
                continue
            if bound is not None:
                problem = (before and bound.problem(before, point)) or (
                    around.after and bound.problem(point, around.after)
                )
                if problem:
                    decision.implausible[index] = problem
                    continue
            taken, taken_index = point, index
            decision.accepted.append(index)
    decision.accepted.sort()
    decision.duplicates.sort()
    return decision


def _bytes(signed: Sequence[bytes], index: int) -> bytes:
    return signed[index] if 0 <= index < len(signed) else b""


def regression(point: Point, before: Point | None, after: Point | None) -> str | None:
    """Why `point` breaks monotonicity against its neighbours, or None."""
    for field, name in enumerate(METERS, start=1):
        value = point[field]
        if value is None:
            continue
        if before is not None and before[field] is not None and value < before[field]:
            return f"{name} {value} at seq {point.seq} < {before[field]} at seq {before.seq}"
        if after is not None and after[field] is not None and value > after[field]:
            return f"{name} {value} at seq {point.seq} > {after[field]} at seq {after.seq}"
    return None
