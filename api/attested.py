"""Income buckets that add up to what was attested.

Where a bucket edge lies in an attested epoch of the device, the revenue meter there is the
meter rule (`gridshare.core.meter_rule`) applied as the oracle applied it: only readings
received by the epoch's data cutoff, held between the values the epoch's leaf used at its
start and end (the previous leaf's end values, which carry late data and excluded periods,
and the leaf's own end values). At the epoch's bounds the meter *is* those used values, so a
device's buckets over an attested epoch add up exactly to its attested revenue, late
readings included (they are paid in the epoch whose cutoff saw them, as its adjustment).
After the last attested epoch, readings as stored now, never below the last used value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from psycopg import AsyncConnection

from gridshare.api.readings import Bucket, BucketQuery, ReadingStore, bucketed, meters_at
from gridshare.core import meter_rule as rule
from gridshare.core.timegrid import micros
from gridshare.oracle.leaves import DeviceLeaf

EPOCHS_SQL = """
SELECT e.pool, e.epoch, e.period_start, e.period_end, e.data_cutoff, l.leaf_data
FROM oracle_leaves l JOIN oracle_epochs e USING (pool, epoch)
WHERE l.device_id = %(device)s AND e.state IN ('submitted', 'confirmed')
  AND e.period_end > %(start)s AND e.period_start <= %(end)s AND l.leaf_data IS NOT NULL
ORDER BY e.period_start
"""
# the readings an epoch's meters were read from: those received by its cutoff, in the
# period and the nearest one on each side
READINGS_SQL = """
SELECT time, seq, energy_wh_total, revenue_minor_total, coalesce(sessions_total, 0)
FROM ((SELECT * FROM telemetry WHERE device_id = %(device)s AND time < %(start)s
         AND received_at <= %(cutoff)s ORDER BY time DESC, seq DESC LIMIT 1)
      UNION ALL
      (SELECT * FROM telemetry WHERE device_id = %(device)s AND time >= %(start)s
         AND time <= %(end)s AND received_at <= %(cutoff)s)
      UNION ALL
      (SELECT * FROM telemetry WHERE device_id = %(device)s AND time > %(end)s
         AND received_at <= %(cutoff)s ORDER BY time, seq LIMIT 1)) r
ORDER BY time, seq
"""
LAST_SQL = """
SELECT l.pool, e.period_end, l.leaf_data
FROM oracle_leaves l JOIN oracle_epochs e USING (pool, epoch)
WHERE l.device_id = %(device)s AND e.state IN ('submitted', 'confirmed')
  AND e.period_end <= %(start)s AND l.leaf_data IS NOT NULL
ORDER BY e.period_end DESC LIMIT 1
"""


@dataclass(frozen=True)
class AttestedSpan:
    start: datetime
    end: datetime
    cutoff: datetime
    used_start: int  # revenue meter values the epoch's leaf used
    used_end: int


async def _spans(
    conn: AsyncConnection, device_id: str, start: datetime, end: datetime
) -> tuple[list[AttestedSpan], int | None]:
    """The device's attested epochs overlapping [start, end], and the revenue value used at
    the end of the last attested epoch before `start` (None: none)."""
    params = {"device": device_id, "start": start, "end": end}
    cur = await conn.execute(EPOCHS_SQL, params)
    spans = []
    for pool, _epoch, s, e, cutoff, data in await cur.fetchall():
        leaf = DeviceLeaf.from_signing_bytes(pool, device_id, bytes(data))
        used_end = leaf.end_revenue_minor if leaf.carries else await _first(conn, device_id)
        spans.append(AttestedSpan(s, e, cutoff, used_end - leaf.revenue_minor, used_end))
    cur = await conn.execute(LAST_SQL, params)
    row = await cur.fetchone()
    before = None
    if row is not None:
        leaf = DeviceLeaf.from_signing_bytes(row[0], device_id, bytes(row[2]))
        before = leaf.end_revenue_minor if leaf.carries else await _first(conn, device_id)
    return spans, before


async def _first(conn: AsyncConnection, device_id: str) -> int:
    """The revenue meter of the device's first reading: where the oracle starts a device
    that has no leaf to carry (one excluded in its first epoch, whose leaf carries zeros)."""
    cur = await conn.execute(
        "SELECT revenue_minor_total FROM telemetry WHERE device_id = %s ORDER BY time, seq LIMIT 1",
        (device_id,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _value_in(
    conn: AsyncConnection, device_id: str, span: AttestedSpan, edges: list[datetime]
) -> dict[datetime, int]:
    cur = await conn.execute(
        READINGS_SQL,
        {"device": device_id, "start": span.start, "end": span.end, "cutoff": span.cutoff},
    )
    readings = [rule.Reading(*r) for r in await cur.fetchall()]
    inside = [t for t in edges if span.start < t < span.end]
    values = rule.bucket_values(readings, inside, "revenue", span.used_start, span.used_end)
    return {span.start: span.used_start, span.end: span.used_end} | dict(
        zip(inside, values, strict=True)
    )


async def income_buckets(
    store: ReadingStore, conn: AsyncConnection, query: BucketQuery
) -> list[Bucket]:
    """Revenue per bucket over [start, end): the attested meter inside attested epochs (see
    the module docstring), readings as stored elsewhere."""
    device_id, start, step = query.device_id, query.start, query.step
    buckets = await bucketed(store, conn, query, with_stats=False)
    spans, before = await _spans(conn, device_id, start, query.end)
    if not buckets or (not spans and before is None):
        return buckets
    edges = [b.start for b in buckets] + [buckets[-1].end]
    knots = await store.knots(conn, device_id, edges, step)
    raw = [v.revenue_minor if v else None for v in meters_at(knots, [micros(t) for t in edges])]
    value = dict(zip(edges, raw, strict=True))
    for span in spans:
        value |= await _value_in(conn, device_id, span, edges)
    last = spans[-1].used_end if spans else before
    open_from = spans[-1].end if spans else start
    for t, v in zip(edges, raw, strict=True):
        if t > open_from and last is not None:  # after the last attested epoch
            value[t] = max(last if v is None else v, last)
    return [replace(b, revenue_minor=_diff(value[b.start], value[b.end])) for b in buckets]


def _diff(a: int | None, b: int | None) -> int:
    return b - a if a is not None and b is not None else 0
