"""Ingest's lookup of readings at or below a device's last seq, bounded and unbounded.

On a private PostgreSQL (the flavor the local stack would choose: a hypertable with 1-day
chunks where TimescaleDB is installed), `DEVICES` devices with a reading every
`EVERY_MINUTES` over the last `DAYS` days (a chunk a day), put in directly. One batch looks
up `BATCH` redelivered readings of the last day, one per device:

- `bounded_ms`: the writer's twin probe (`TWINS`: `(device_id, seq, time)` at each reading's
  own device time, the batch's device times as constant bounds), which decides every
  redelivered copy;
- `unbounded_ms`: the lookup every such reading took before (`NEIGHBOURS`: the seq at any
  time and the stored neighbours by seq, in every chunk), which now only readings without a
  twin at their time take;
- `chunks_planned_*`: chunk scans in each statement's plan; `chunks`: chunks of `telemetry`.

Times are medians of `ROUNDS` runs after one warm-up. Prints JSON and writes
bench/results/probe.json. Target: the bounded probe plans at most the chunks of the
batch's day, and is faster than the unbounded lookup.
"""

from __future__ import annotations

import statistics
import time

import psycopg
from _common import conditions, finish, load_average, private_stack
from psycopg import sql

from gridshare.core import db
from gridshare.core.stack.postgres import Postgres
from gridshare.ingest.writer import NEIGHBOURS, twin_probe

DEVICES = 200
DAYS = 60
EVERY_MINUTES = 120
BATCH = 200
ROUNDS = 15
FILL = """INSERT INTO telemetry (time, device_id, seq, status, energy_wh_total,
  revenue_minor_total, signed_bytes, sig)
SELECT date_trunc('minute', now()) - n * make_interval(mins => %s), 'bench-' || d,
  1000000 - n, 'idle', 1000000 - n, 0, ''::bytea, ''::bytea
FROM generate_series(1, %s) AS d, generate_series(0, %s) AS n"""


def median_ms(conn: psycopg.Connection, query: sql.Composable, params: tuple) -> float:
    conn.execute(query, params).fetchall()
    runs = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        conn.execute(query, params).fetchall()
        runs.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(runs), 3)


def chunk_scans(conn: psycopg.Connection, query: sql.Composable, params: tuple) -> int:
    plan = conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
    return sum(" on _hyper_" in line for (line,) in plan)


def measure(conn: psycopg.Connection) -> dict:
    per_day = 24 * 60 // EVERY_MINUTES
    conn.execute(FILL, (EVERY_MINUTES, DEVICES, DAYS * per_day - 1))
    conn.execute("ANALYZE telemetry")
    recent = conn.execute(
        "SELECT device_id, seq, time FROM telemetry WHERE time > now() - interval '1 day'"
        " ORDER BY device_id, time"
    ).fetchall()
    by_device: dict[str, list[tuple]] = {}
    for row in recent:
        by_device.setdefault(row[0], []).append(row)
    # one reading per device, their device times spread over the day
    rows = [kept[i % len(kept)] for i, kept in enumerate(list(by_device.values())[:BATCH])]
    devices, seqs, times = (list(column) for column in zip(*rows, strict=True))
    indexes = list(range(len(rows)))
    twins = twin_probe(min(times), max(times))
    bounded = (indexes, devices, seqs, times)
    unbounded = (indexes, devices, seqs)
    found = len(conn.execute(twins, bounded).fetchall())
    flavor = db.schema_flavor(conn)
    hypertable = flavor is not None and flavor.hypertables
    chunks = (
        conn.execute("SELECT count(*) FROM show_chunks('telemetry')").fetchone()[0]
        if hypertable
        else 0
    )
    return {
        "rows": conn.execute("SELECT count(*) FROM telemetry").fetchone()[0],
        "chunks": chunks,
        "lookups": len(rows),
        "twins_found": found,
        "device_times_span_hours": round((max(times) - min(times)).total_seconds() / 3600, 2),
        "bounded_ms": median_ms(conn, twins, bounded),
        "unbounded_ms": median_ms(conn, sql.SQL(NEIGHBOURS), unbounded),
        "chunks_planned_bounded": chunk_scans(conn, twins, bounded),
        "chunks_planned_unbounded": chunk_scans(conn, sql.SQL(NEIGHBOURS), unbounded),
    }


def main() -> None:
    load_at_start = load_average()
    with private_stack("probe", [Postgres]) as (settings, _):
        db.migrate(settings)
        with db.connect(settings, autocommit=True) as conn:
            flavor = str(db.schema_flavor(conn))
            figures = measure(conn)
    result = {
        **conditions("probe", flavor, load_at_start),
        "devices": DEVICES,
        "days": DAYS,
        **figures,
        "speedup": round(figures["unbounded_ms"] / figures["bounded_ms"], 1),
    }
    result["meets_target"] = (
        figures["twins_found"] == figures["lookups"]
        and figures["chunks_planned_bounded"] <= (2 if figures["chunks"] else 0)
        and figures["bounded_ms"] < figures["unbounded_ms"]
    )
    finish("probe", result, result["meets_target"])


if __name__ == "__main__":
    main()
