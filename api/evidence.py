"""An attested epoch's evidence: for each device, the signed readings its leaf is derived
from (found as the oracle finds them: around each period bound and its first reading, all
received by the epoch's data cutoff), its leaf and the previous epoch's leaf.

Read from the database as it is now: if a stored reading was changed after the epoch was
attested, the evidence shows it, and an auditor's checks (signature, signed bytes against the
stored values, leaf against the on-chain root) say where.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from gridshare.api.schemas import EvidenceReading, Exclusion, StoredMeters
from gridshare.core.chain.device_keys import KeySpan
from gridshare.oracle.provenance import StoredReading, check_reading

ROLES = ("first", "before_start", "from_start", "before_end", "from_end")


def _lookup(role: str, condition: str, order: str) -> str:
    return f"""(SELECT '{role}' AS role, t.time, t.seq, t.received_at, t.energy_wh_total,
                   t.revenue_minor_total, t.sessions_total, t.signed_bytes, t.sig
            FROM telemetry t
            WHERE t.device_id = l.device_id AND {condition} AND t.received_at <= %(cutoff)s
            ORDER BY {order} LIMIT 1)"""


READINGS_SQL = f"""
SELECT l.device_id, x.*
FROM unnest(%(devices)s::text[]) AS l(device_id)
CROSS JOIN LATERAL (
    {_lookup("first", "true", "t.time, t.seq")}
    UNION ALL {_lookup("before_start", "t.time < %(start)s", "t.time DESC, t.seq DESC")}
    UNION ALL {_lookup("from_start", "t.time >= %(start)s", "t.time, t.seq")}
    UNION ALL {_lookup("before_end", "t.time < %(end)s", "t.time DESC, t.seq DESC")}
    UNION ALL {_lookup("from_end", "t.time >= %(end)s", "t.time, t.seq")}
) x
"""

HEAD_SQL = """SELECT period_start, period_end, data_cutoff, leaves_root, state
              FROM oracle_epochs WHERE pool = %s AND epoch = %s"""

LEAVES_SQL = """
SELECT l.device_id, l.leaf, l.leaf_data, l.excluded, l.exclusion_detail, p.leaf_data
FROM oracle_leaves l
LEFT JOIN oracle_leaves p ON p.pool = l.pool AND p.epoch = l.epoch - 1 AND p.device_id = l.device_id
WHERE l.pool = %(pool)s AND l.epoch = %(epoch)s AND l.device_id > %(after)s
  AND (%(only)s::text IS NULL OR l.device_id = %(only)s)
ORDER BY l.device_id LIMIT %(limit)s
"""


async def epoch_head(conn: AsyncConnection, pool: str, epoch: int) -> tuple[Any, ...] | None:
    """(period_start, period_end, data_cutoff, leaves_root, state) of an epoch."""
    cur = await conn.execute(HEAD_SQL, (pool, epoch))
    return await cur.fetchone()


async def leaf_rows(
    conn: AsyncConnection, pool: str, epoch: int, after: str, limit: int, only: str | None = None
) -> list[tuple[Any, ...]]:
    """(device_id, leaf, leaf_data, excluded, detail, previous leaf_data) by device id (only
    device `only`, when given)."""
    cur = await conn.execute(
        LEAVES_SQL, {"pool": pool, "epoch": epoch, "after": after, "limit": limit, "only": only}
    )
    return await cur.fetchall()


async def determining_readings(
    conn: AsyncConnection, devices: list[str], start: datetime, end: datetime, cutoff: datetime
) -> dict[str, list[EvidenceReading]]:
    """Each device's determining readings, each reading once (with all its roles)."""
    cur = await conn.execute(
        READINGS_SQL, {"devices": devices, "start": start, "end": end, "cutoff": cutoff}
    )
    found: dict[str, dict[int, EvidenceReading]] = {d: {} for d in devices}
    for device_id, role, t, seq, received, e, r, s, signed, sig in await cur.fetchall():
        known = found[device_id].get(seq)
        if known is not None:
            known.roles.append(role)
            continue
        found[device_id][seq] = EvidenceReading(
            roles=[role],
            seq=seq,
            ts=t,
            received_at=received,
            payload=bytes(signed).decode("utf-8", errors="replace"),
            sig="0x" + bytes(sig).hex(),
            stored=StoredMeters(time=t, energy_wh_total=e, revenue_minor_total=r, sessions_total=s),
        )
    return {d: sorted(rs.values(), key=lambda x: (x.ts, x.seq)) for d, rs in found.items()}


def exclusion(reason: str, detail: str | None) -> Exclusion | None:
    return Exclusion(reason=reason, detail=detail) if reason else None


def check(device_id: str, reading: EvidenceReading, spans: list[KeySpan]) -> str | None:
    """What is wrong with a served reading (signed bytes against the stored values, the
    signature against the device's on-chain key then), or None."""
    stored = StoredReading(
        device_id,
        reading.stored.time,
        reading.seq,
        reading.stored.energy_wh_total,
        reading.stored.revenue_minor_total,
        reading.stored.sessions_total or 0,
        (reading.payload or "").encode("utf-8"),
        bytes.fromhex((reading.sig or "0x").removeprefix("0x")),
    )
    failed = check_reading(stored, spans)
    return f"{failed[0]}: {failed[1]}" if failed else None
