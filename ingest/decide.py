"""Which readings of a batch are new, which are duplicates, which break meter monotonicity.

Pure logic over the batch and the stored neighbours the writer fetched under the devices'
row locks, so the rules are testable on their own. Readings can arrive out of order
(device replay, broker redelivery), so each reading is compared with its neighbours *by
seq*: no cumulative meter may be lower than at the nearest lower seq, nor higher than at the
nearest higher seq, whether those neighbours are stored or earlier in the same batch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
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

    @classmethod
    def of(cls, reading: Telemetry) -> Point:
        return cls(
            reading.seq,
            reading.energy_wh_total,
            reading.revenue_minor_total,
            reading.sessions_total,
        )


class Stored(NamedTuple):
    """What the database holds around one reading of the batch."""

    duplicate: bool = False  # a reading with this (device_id, seq) is stored
    before: Point | None = None  # stored reading with the nearest lower seq
    after: Point | None = None  # stored reading with the nearest higher seq


@dataclass
class Decision:
    accepted: list[int]  # indexes into the batch's readings, in arrival order
    duplicates: list[int]
    regressions: dict[int, str]  # index -> detail


def decide(readings: list[Telemetry], stored: list[Stored]) -> Decision:
    """Sort each device's readings by seq and keep those consistent with their neighbours."""
    by_device: dict[str, list[int]] = defaultdict(list)
    for index, reading in enumerate(readings):
        by_device[reading.device_id].append(index)
    decision = Decision([], [], {})
    for indexes in by_device.values():
        indexes.sort(key=lambda i: readings[i].seq)  # stable: equal seqs keep arrival order
        taken: Point | None = None
        for index in indexes:
            reading, around = readings[index], stored[index]
            if around.duplicate or (taken is not None and taken.seq == reading.seq):
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
            taken = point
            decision.accepted.append(index)
    decision.accepted.sort()
    decision.duplicates.sort()
    return decision


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
