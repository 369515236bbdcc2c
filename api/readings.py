"""Time-bucketed device figures, consistent with the oracle (SPEC §7).

A bucket's energy and revenue are the differences of the device's cumulative meters at the
bucket's bounds. The meter value at a bound is the reading exactly on it, else the linear
interpolation in time between the neighbouring readings (floored to an integer, so bucket
figures telescope: buckets inside an epoch add up exactly to the epoch's figure). Before a
device's first reading its meter is taken at that first reading; after its last reading it
stays at the last one; across a meter that went down (a device reset) the value before holds.
This is the oracle's rule (`gridshare.oracle.meters`).

One interface (`ReadingStore`), two implementations: `RawReadings` probes the telemetry table
around each bound; `HourlyReadings` uses the hourly aggregate (`telemetry_hourly`: a
TimescaleDB continuous aggregate, or a plain view) for buckets that are whole hours. Both
return the same figures: an hourly row's first and last readings are exactly the neighbours
of the hour bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from psycopg import AsyncConnection

from gridshare.core.timegrid import micros

BUCKETS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
}
MAX_POINTS = 2000


class Knot(NamedTuple):
    """One stored reading's meters: the points the meter curve is interpolated between.
    Time in integer microseconds since the Unix epoch (exact, and cheap to compare: a request
    evaluates thousands)."""

    us: int
    energy_wh: int
    revenue_minor: int


@dataclass(frozen=True)
class MeterValue:
    energy_wh: int
    revenue_minor: int


@dataclass(frozen=True)
class BucketStats:
    """Per-bucket averages of the instantaneous readings (not meters)."""

    readings: int
    power_w_avg: float | None
    power_w_max: float | None
    soc_pct_avg: float | None


def interpolate(v0: int, v1: int, t0: int, t1: int, t: int) -> int:
    """v at t on the line through (t0, v0) and (t1, v1) (microseconds), floored."""
    span = t1 - t0
    if span <= 0:
        return v1
    return v0 + (v1 - v0) * (t - t0) // span


def meters_at(knots: list[Knot], times_us: list[int]) -> list[MeterValue | None]:
    """The meters at each of the ascending times from time-sorted knots (SPEC §7 rule), in
    one pass over both lists; None where there are no readings at all."""
    out: list[MeterValue | None] = []
    i, n = 0, len(knots)
    for t in times_us:
        while i < n and knots[i].us <= t:
            i += 1
        # knots[i - 1].us <= t < knots[i].us; several readings at t: the last of them
        if n == 0:
            out.append(None)
        elif i == 0:
            out.append(MeterValue(knots[0].energy_wh, knots[0].revenue_minor))
        elif i == n or knots[i - 1].us == t:
            out.append(MeterValue(knots[i - 1].energy_wh, knots[i - 1].revenue_minor))
        else:
            a, b = knots[i - 1], knots[i]
            out.append(
                MeterValue(
                    _between(a.energy_wh, b.energy_wh, a.us, b.us, t),
                    _between(a.revenue_minor, b.revenue_minor, a.us, b.us, t),
                )
            )
    return out


def meter_at(knots: list[Knot], t: datetime) -> MeterValue | None:
    """The meters at one time (see `meters_at`)."""
    return meters_at(knots, [micros(t)])[0]


def _between(v0: int, v1: int, t0: int, t1: int, t: int) -> int:
    """No interpolation across a meter that went down (a reset): the value before holds."""
    return v0 if v1 < v0 else interpolate(v0, v1, t0, t1, t)


def bounds(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """Bucket bounds from start to end inclusive (both already aligned)."""
    count = int((end - start) / step)
    return [start + i * step for i in range(count + 1)]


@dataclass(frozen=True)
class BucketQuery:
    """One device's buckets of `step` over [start, end)."""

    device_id: str
    start: datetime
    end: datetime
    step: timedelta


class ReadingStore(Protocol):
    """What the API needs from stored readings: meters at bounds and per-bucket stats."""

    async def knots(
        self, conn: AsyncConnection, device_id: str, bounds: list[datetime], step: timedelta
    ) -> list[Knot]:
        """Readings sufficient to evaluate the meters at every bound (time-sorted)."""
        ...

    async def stats(self, conn: AsyncConnection, query: BucketQuery) -> dict[datetime, BucketStats]:
        """Averages of instantaneous readings per bucket start (buckets without data absent)."""
        ...


async def _stats(
    conn: AsyncConnection, sql: str, query: BucketQuery
) -> dict[datetime, BucketStats]:
    params = {"step": query.step, "device": query.device_id, "start": query.start, "end": query.end}
    cur = await conn.execute(sql, params)
    return {r[0]: BucketStats(r[1], r[2], r[3], r[4]) for r in await cur.fetchall()}


def _knots(rows: list[tuple]) -> list[Knot]:
    return [Knot(*r) for r in sorted({r for r in rows if r[0] is not None})]


class RawReadings:
    """Straight from `telemetry`: two index probes per bound, one grouped scan for stats."""

    KNOTS_SQL = """
        SELECT (extract(epoch FROM p.time) * 1000000)::bigint, p.energy_wh_total,
               p.revenue_minor_total
        FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, %(step)s) AS b(bound)
        CROSS JOIN LATERAL (
            (SELECT time, energy_wh_total, revenue_minor_total FROM telemetry
             WHERE device_id = %(device)s AND time <= b.bound
             ORDER BY time DESC, seq DESC LIMIT 1)
            UNION ALL
            (SELECT time, energy_wh_total, revenue_minor_total FROM telemetry
             WHERE device_id = %(device)s AND time > b.bound
             ORDER BY time ASC, seq ASC LIMIT 1)
        ) AS p
    """
    STATS_SQL = """
        SELECT date_bin(%(step)s, time, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket,
               count(*), avg(power_w), max(power_w), avg(soc_pct)
        FROM telemetry
        WHERE device_id = %(device)s AND time >= %(start)s AND time < %(end)s
        GROUP BY 1
    """

    async def knots(
        self, conn: AsyncConnection, device_id: str, bounds: list[datetime], step: timedelta
    ) -> list[Knot]:
        params = {"start": bounds[0], "end": bounds[-1], "step": step, "device": device_id}
        cur = await conn.execute(self.KNOTS_SQL, params)
        return _knots(await cur.fetchall())

    async def stats(self, conn: AsyncConnection, query: BucketQuery) -> dict[datetime, BucketStats]:
        return await _stats(conn, self.STATS_SQL, query)


class HourlyReadings:
    """From the hourly aggregate for whole-hour buckets; raw probes only outside the range.

    An hourly row carries its first and last readings in the oracle's order (device time,
    then seq), each with its own meters. The neighbours of an hour bound are the last reading
    of the latest non-empty hour before it and the first reading of the first non-empty hour
    from it on: knots of those rows.
    """

    ROWS_SQL = """
        SELECT (extract(epoch FROM first_time) * 1000000)::bigint, energy_wh_first,
               revenue_minor_first,
               (extract(epoch FROM last_time) * 1000000)::bigint, energy_wh_last,
               revenue_minor_last
        FROM telemetry_hourly
        WHERE device_id = %(device)s AND bucket >= %(start)s AND bucket < %(end)s
    """
    OUTSIDE_SQL = """
        SELECT (extract(epoch FROM time) * 1000000)::bigint, energy_wh_total, revenue_minor_total
        FROM ((SELECT time, energy_wh_total, revenue_minor_total FROM telemetry
               WHERE device_id = %(device)s AND time < %(start)s
               ORDER BY time DESC, seq DESC LIMIT 1)
              UNION ALL
              (SELECT time, energy_wh_total, revenue_minor_total FROM telemetry
               WHERE device_id = %(device)s AND time >= %(end)s
               ORDER BY time ASC, seq ASC LIMIT 1)) AS outside
    """
    STATS_SQL = """
        SELECT date_bin(%(step)s, bucket, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b,
               sum(readings)::bigint,
               sum(power_w_avg * readings) FILTER (WHERE power_w_avg IS NOT NULL)
                 / nullif(sum(readings) FILTER (WHERE power_w_avg IS NOT NULL), 0),
               max(power_w_max),
               sum(soc_pct_avg * readings) FILTER (WHERE soc_pct_avg IS NOT NULL)
                 / nullif(sum(readings) FILTER (WHERE soc_pct_avg IS NOT NULL), 0)
        FROM telemetry_hourly
        WHERE device_id = %(device)s AND bucket >= %(start)s AND bucket < %(end)s
        GROUP BY 1
    """

    def __init__(self) -> None:
        self.raw = RawReadings()

    async def knots(
        self, conn: AsyncConnection, device_id: str, bounds: list[datetime], step: timedelta
    ) -> list[Knot]:
        if step % timedelta(hours=1) or not bounds:
            return await self.raw.knots(conn, device_id, bounds, step)
        params = {"device": device_id, "start": bounds[0], "end": bounds[-1]}
        cur = await conn.execute(self.ROWS_SQL, params)
        rows: list[tuple] = []
        for r in await cur.fetchall():
            rows.append(r[0:3])
            rows.append(r[3:6])
        cur = await conn.execute(self.OUTSIDE_SQL, params)
        rows.extend(await cur.fetchall())
        return _knots(rows)

    async def stats(self, conn: AsyncConnection, query: BucketQuery) -> dict[datetime, BucketStats]:
        if query.step % timedelta(hours=1):
            return await self.raw.stats(conn, query)
        return await _stats(conn, self.STATS_SQL, query)


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime
    energy_wh: int
    revenue_minor: int
    stats: BucketStats | None


async def bucketed(
    store: ReadingStore, conn: AsyncConnection, query: BucketQuery, with_stats: bool
) -> list[Bucket]:
    """Per-bucket meter differences (and optionally averages) over [start, end)."""
    edges = bounds(query.start, query.end, query.step)
    knots = await store.knots(conn, query.device_id, edges, query.step)
    stats = await store.stats(conn, query) if with_stats else {}
    values = meters_at(knots, [micros(t) for t in edges])
    out = []
    for i in range(len(edges) - 1):
        a, b = values[i], values[i + 1]
        energy = b.energy_wh - a.energy_wh if a and b else 0
        revenue = b.revenue_minor - a.revenue_minor if a and b else 0
        out.append(Bucket(edges[i], edges[i + 1], energy, revenue, stats.get(edges[i])))
    return out
