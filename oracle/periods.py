"""Settlement periods in device time (SPEC §7) and each pool's watermark.

Epochs are consecutive periods of `period_seconds`, aligned to the Unix epoch in UTC. Epoch 1
of a pool is the period holding the earliest reading of any of its devices; its start is
persisted in `oracle_pools` once computed (with the period length then in force), so the grid
never moves. A period is closed when the pool's watermark has passed its end: the oldest
latest-reading time among the pool's active devices, leaving out devices that are silent,
i.e. whose latest reading lags the pool's median latest reading by more than the allowance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from gridshare.core.timegrid import align


@dataclass(frozen=True)
class PoolGrid:
    """Where a pool's epochs lie."""

    pool: str
    epoch1_start: datetime
    period_seconds: int

    def bounds(self, epoch: int) -> tuple[datetime, datetime]:
        """[start, end) of an epoch (1-based)."""
        if epoch < 1:
            raise ValueError("epochs start at 1")
        start = self.epoch1_start + timedelta(seconds=(epoch - 1) * self.period_seconds)
        return start, start + timedelta(seconds=self.period_seconds)


def load_grid(conn: psycopg.Connection, pool: str) -> PoolGrid | None:
    row = conn.execute(
        "SELECT epoch1_start, period_seconds FROM oracle_pools WHERE pool = %s", (pool,)
    ).fetchone()
    return PoolGrid(pool, row[0], row[1]) if row else None


def ensure_grid(conn: psycopg.Connection, pool: str, period_seconds: int) -> PoolGrid | None:
    """The pool's grid, fixing epoch 1 from its first reading when not yet fixed; None while
    none of its devices has reported."""
    grid = load_grid(conn, pool)
    if grid is not None:
        return grid
    row = conn.execute(
        """SELECT min(f.time) FROM devices d
           CROSS JOIN LATERAL (SELECT t.time FROM telemetry t WHERE t.device_id = d.device_id
                               ORDER BY t.time LIMIT 1) f
           WHERE d.pool = %s""",
        (pool,),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    start = align(row[0], timedelta(seconds=period_seconds))
    conn.execute(
        "INSERT INTO oracle_pools (pool, epoch1_start, period_seconds) VALUES (%s, %s, %s)"
        " ON CONFLICT (pool) DO NOTHING",
        (pool, start, period_seconds),
    )
    return load_grid(conn, pool)


@dataclass(frozen=True)
class Watermark:
    """How far a pool's data has arrived, in device time."""

    at: datetime | None  # None: no active device has reported
    active_devices: int
    silent_devices: int  # left out of the watermark


def watermark(
    conn: psycopg.Connection, pool: str, allowance_seconds: int, cutoff: datetime | None = None
) -> Watermark:
    """The oldest latest-reading time among active, non-silent devices of the pool, counting
    only readings received by `cutoff` (when given)."""
    row = conn.execute(
        """WITH last AS (
               SELECT d.device_id, l.time FROM devices d
               LEFT JOIN LATERAL (SELECT t.time FROM telemetry t WHERE t.device_id = d.device_id
                                    AND (%(cutoff)s::timestamptz IS NULL
                                         OR t.received_at <= %(cutoff)s)
                                  ORDER BY t.time DESC LIMIT 1) l ON true
               WHERE d.pool = %(pool)s AND d.active),
           ref AS (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY time) AS median FROM last)
           SELECT min(last.time) FILTER (WHERE last.time >= ref.median - %(allow)s),
                  count(*),
                  count(*) FILTER (WHERE last.time IS NULL OR last.time < ref.median - %(allow)s)
           FROM last CROSS JOIN ref""",
        {"pool": pool, "allow": timedelta(seconds=allowance_seconds), "cutoff": cutoff},
    ).fetchone()
    assert row is not None
    return Watermark(row[0], row[1], row[2])
