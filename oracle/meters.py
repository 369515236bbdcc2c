"""Per-device figures of one period, computed in one SQL statement.

For each device the meters are read at the period's bounds S and E (SPEC §7):

* a reading exactly on a bound is that bound's value;
* between two readings, linear interpolation in time (integer, rounded down; the same bound
  value ends one epoch and starts the next, so rounding never loses or adds anything);
* after a device's last reading its last value holds, and before its first reading its first
  value holds: no extrapolation, so a silent device earns nothing until it reports again.

Late data is never rewritten into an attested epoch. An epoch starts each device's meters
from the values its previous epoch *used* as end values (its leaf's end values, which the
caller has checked against the on-chain root; see provenance.py) or, in a
device's first epoch, from its first reading ever. So the figure is meter(E) minus the value
used before, and the part of it that belongs to earlier periods - meter(S) as known now minus
the value used before - is shown as the leaf's adjustment. Nothing is lost or counted twice:
a device's figures over all epochs add up to its last used meter minus its first reading.

A meter below the value the epoch started from (a device that reported zeroed or reset
meters) never makes a figure negative: the used end value is never below the used start
value, `meter_resets` counts the meters (energy, revenue) seen below their start value in the
period, and the energy is carried until the meter is above the start value again. (Ingest
quarantines readings whose meters go down in `seq` order, so only clock-skewed readings can
show this in stored data.)

Uptime: each reading whose status is not `fault` or `maintenance` vouches for one nominal
reading interval (`reading_interval_seconds`, the devices' reporting interval) of uptime;
the sum is capped at the period. (Order-free: the period's readings minus its down readings,
which are counted from the partial index `telemetry_oracle_down_idx`, migration 0032, so no
reading's status text is compared.)

Cost: everything is read per device of the pool, from indexes alone (migrations 0031-0032):
four lookups for the readings around the bounds and, for a device in its first epoch with
readings before the period, one for its first reading (else that is the first reading at or
after the start) in the covering index `telemetry_oracle_idx` (device_id, time, seq)
INCLUDE (received_at, meters); one aggregate over the device's readings of the period, which
are adjacent there; one count in the partial index of down readings. So the work grows with
the pool's readings in the period, not with other pools' or periods', needs no sort and no
heap visit (index-only scans, while (auto)vacuum keeps the visibility map current).
10,000 devices with 2.88 M readings: about 1.1-1.3 s of one core, two thirds of it the
aggregate, which has to visit every reading (docs/oracle.md).

Only readings received up to the epoch's `data_cutoff` count, so every signer computing the
same epoch sees the same data while ingest keeps writing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from gridshare.oracle.leaves import DeviceCounts, DeviceLeaf
from gridshare.oracle.provenance import StoredReading

DOWN_STATUSES = ("fault", "maintenance")
BOUND_ALIASES = ("f", "s0", "s1", "e0", "e1")  # first reading, then around each bound
BOUND_COLUMNS = ", ".join(
    f"{a}_t, {a}_seq, {a}_e, {a}_r, {a}_s, {a}_b, {a}_g" for a in BOUND_ALIASES
)
METERS = {"e": "energy_wh_total", "r": "revenue_minor_total", "s": "coalesce(sessions_total, 0)"}


def _lookup(alias: str, condition: str, order: str) -> str:
    """The reading nearest a bound on one side, by index on (device_id, time)."""
    return f"""LEFT JOIN LATERAL (
        SELECT t.time AS {alias}_t, t.seq AS {alias}_seq, t.energy_wh_total AS {alias}_e,
               t.revenue_minor_total AS {alias}_r, coalesce(t.sessions_total, 0) AS {alias}_s,
               t.signed_bytes AS {alias}_b, t.sig AS {alias}_g
        FROM telemetry t
        WHERE t.device_id = v.device_id AND {condition} AND t.received_at <= %(cutoff)s
        ORDER BY {order} LIMIT 1) {alias} ON true"""


def _bound(before: str, after: str, meter: str, bound: str) -> str:
    """A meter at a bound from the reading before it and the reading on or after it."""
    t0, v0, t1, v1 = f"{before}_t", f"{before}_{meter}", f"{after}_t", f"{after}_{meter}"
    return f"""(CASE
        WHEN {t1} = {bound} OR {t0} IS NULL THEN {v1}
        WHEN {t1} IS NULL OR {v1} < {v0} THEN {v0}
        ELSE {v0} + div(({v1} - {v0})::numeric * (extract(epoch FROM {bound} - {t0}) * 1000000),
                        extract(epoch FROM {t1} - {t0}) * 1000000)::bigint
    END)"""


def _meter(meter: str) -> str:
    """Used start, bound values now, used end, figure and adjustment of one meter."""
    start = f"coalesce(p_{meter}, f_{meter}, s1_{meter})"
    raw_s = f"coalesce({_bound('s0', 's1', meter, '%(start)s')}, {start})"
    raw_e = f"coalesce({_bound('e0', 'e1', meter, '%(end)s')}, {start})"
    return f"""
        {start} AS start_{meter},
        GREATEST({raw_e}, {start}) AS end_{meter},
        GREATEST({raw_e}, {start}) - {start} AS figure_{meter},
        {raw_s} - {start} AS adjust_{meter}"""


PERIOD_SQL = f"""
WITH prev AS (  -- end values of the previous epoch's leaves, as checked against the chain
    SELECT * FROM unnest(%(p_ids)s::text[], %(p_e)s::numeric[], %(p_r)s::numeric[],
                         %(p_s)s::numeric[]) AS p(device_id, p_e, p_r, p_s)
),
devs AS (
    SELECT d.device_id, d.rated_power_w, p.p_e, p.p_r, p.p_s, p.device_id IS NOT NULL AS carried,
           EXISTS (SELECT 1 FROM device_flags fl
                   WHERE fl.device_id = d.device_id AND fl.flagged_at <= %(cutoff)s
                     AND (fl.cleared_at IS NULL OR fl.cleared_at > %(cutoff)s)) AS flagged
    FROM devices d
    LEFT JOIN prev p ON p.device_id = d.device_id
    WHERE d.pool = %(pool)s
),
b AS (
    SELECT v.*, s0.*, s1.*, e0.*, e1.*, f.*, a.*, dn.*
    FROM devs v
    {_lookup("s0", "t.time < %(start)s", "t.time DESC, t.seq DESC")}
    {_lookup("s1", "t.time >= %(start)s", "t.time, t.seq")}
    {_lookup("e0", "t.time < %(end)s", "t.time DESC, t.seq DESC")}
    {_lookup("e1", "t.time >= %(end)s", "t.time, t.seq")}
    LEFT JOIN LATERAL (
        SELECT t.time AS f_t, t.seq AS f_seq, t.energy_wh_total AS f_e,
               t.revenue_minor_total AS f_r, coalesce(t.sessions_total, 0) AS f_s,
               t.signed_bytes AS f_b, t.sig AS f_g
        FROM telemetry t
        WHERE NOT v.carried AND s0_t IS NOT NULL  -- else the first reading is s1
          AND t.device_id = v.device_id AND t.received_at <= %(cutoff)s
        ORDER BY t.time, t.seq LIMIT 1) f ON true
    LEFT JOIN LATERAL (
        SELECT count(*) AS readings,
               min(t.energy_wh_total) AS min_e, min(t.revenue_minor_total) AS min_r
        FROM telemetry t
        WHERE t.device_id = v.device_id AND t.time >= %(start)s AND t.time < %(end)s
          AND t.received_at <= %(cutoff)s) a ON true
    LEFT JOIN LATERAL (  -- from the partial index of down readings: no text per reading
        SELECT count(*) AS down_readings
        FROM telemetry t
        WHERE t.device_id = v.device_id AND t.status IN {DOWN_STATUSES}
          AND t.time >= %(start)s AND t.time < %(end)s AND t.received_at <= %(cutoff)s) dn ON true
),
m AS (
    SELECT device_id, carried, flagged, rated_power_w, readings,
           readings - down_readings AS up_readings, min_e, min_r,
           {BOUND_COLUMNS},
           CASE WHEN s1_t < %(end)s THEN s1_seq ELSE 0 END AS first_seq,
           CASE WHEN e0_t >= %(start)s THEN e0_seq ELSE 0 END AS last_seq,
           {_meter("e")}, {_meter("r")}, {_meter("s")}
    FROM b
    WHERE carried OR e0_t IS NOT NULL  -- a leaf from its first reading before the period end
)
SELECT m.device_id, figure_e::bigint, figure_r::bigint, figure_s::bigint,
       readings, first_seq::bigint, last_seq::bigint,
       LEAST(up_readings * %(interval)s, %(period)s)::bigint,
       (coalesce(min_e < start_e, false)::int + coalesce(min_r < start_r, false)::int),
       adjust_e::bigint, adjust_r::bigint, start_e::bigint, end_e::bigint, start_r::bigint,
       end_r::bigint, start_s::bigint, end_s::bigint,
       CASE WHEN carried AND (adjust_e <> 0 OR adjust_r <> 0) THEN (
           SELECT count(*) FROM telemetry t
           WHERE t.device_id = m.device_id AND t.time < %(start)s
             AND t.time >= %(start)s - (%(end)s - %(start)s)
             AND t.received_at > %(prev_cutoff)s AND t.received_at <= %(cutoff)s)
       ELSE 0 END,
       carried, flagged, rated_power_w,
       {BOUND_COLUMNS}
FROM m
ORDER BY m.device_id
"""


@dataclass(frozen=True)
class DeviceFigures(DeviceCounts):
    """One device's row of PERIOD_SQL (the counts first, in its column order)."""

    start_energy_wh: int
    end_energy_wh: int
    start_revenue_minor: int
    end_revenue_minor: int
    start_sessions: int
    end_sessions: int
    late_readings: int
    carried: bool  # started from the previous epoch's leaf
    flagged: bool  # an open device flag at the data cutoff
    rated_power_w: int
    determining: tuple[StoredReading, ...]  # the readings the figures are derived from

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> DeviceFigures:
        head, tail = row[:21], row[21:]
        determining: dict[int, StoredReading] = {}
        for i in range(len(BOUND_ALIASES)):
            t, seq, e, r, s, signed, sig = tail[7 * i : 7 * i + 7]
            if t is not None:
                determining.setdefault(
                    seq, StoredReading(head[0], t, seq, e, r, s, bytes(signed), bytes(sig))
                )
        return cls(*head, determining=tuple(determining.values()))  # type: ignore[arg-type]


def device_figures(
    conn: psycopg.Connection,
    pool: str,
    epoch: int,
    start: datetime,
    end: datetime,
    cutoff: datetime,
    prev_cutoff: datetime | None,
    reading_interval_seconds: int,
    previous: dict[str, DeviceLeaf],
) -> list[DeviceFigures]:
    """Every device's figures for the period [start, end), ordered by device id, starting
    from the end values of the `previous` epoch's leaves (checked against the chain)."""
    carried = [leaf for leaf in previous.values() if leaf.carries]
    params = {
        "p_ids": [leaf.device_id for leaf in carried],
        "p_e": [leaf.end_energy_wh for leaf in carried],
        "p_r": [leaf.end_revenue_minor for leaf in carried],
        "p_s": [leaf.end_sessions for leaf in carried],
        "pool": pool,
        "epoch": epoch,
        "start": start,
        "end": end,
        "cutoff": cutoff,
        "prev_cutoff": prev_cutoff or cutoff,
        "interval": reading_interval_seconds,
        "period": int((end - start) / timedelta(seconds=1)),
    }
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")  # compiling this plan costs more than running it
        cur = conn.cursor(binary=True)  # bigints as 8 bytes, not digits to parse
        rows = cur.execute(PERIOD_SQL, params).fetchall()  # type: ignore[arg-type]
    return [DeviceFigures.from_row(r) for r in rows]
