"""The attestation state machine as rows of `oracle_epochs` (one per pool and epoch); the
moves between its states are `transitions.TRANSITIONS`.

Each transition is one committed UPDATE guarded by the state it leaves, so a process killed
anywhere resumes from the last committed state and two processes never both advance it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row

from gridshare.oracle.figures import ComputedEpoch


class EpochState(StrEnum):
    COMPUTED = "computed"
    SIGNED = "signed"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    WITHHELD = "withheld"
    FLAGGED = "flagged"


@dataclass(frozen=True)
class EpochRow:
    """One row of `oracle_epochs`."""

    pool: str
    epoch: int
    state: EpochState
    period_start: datetime
    period_end: datetime
    data_cutoff: datetime
    energy_wh: int
    revenue_minor: int
    investor_amount: int
    device_count: int
    leaves_root: str
    digest: str
    flags: list[Any]
    forced: bool
    signers: list[str] | None
    signatures: list[str] | None
    tx_hash: str | None
    tx_nonce: int | None
    tx_raw: str | None
    submitter: str | None
    block_number: int | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EpochRow:
        return cls(
            pool=row["pool"],
            epoch=int(row["epoch"]),
            state=EpochState(row["state"]),
            period_start=row["period_start"],
            period_end=row["period_end"],
            data_cutoff=row["data_cutoff"],
            energy_wh=int(row["energy_wh"]),
            revenue_minor=int(row["revenue_minor"]),
            investor_amount=int(row["investor_amount"]),
            device_count=row["device_count"],
            leaves_root=row["leaves_root"],
            digest=row["digest"],
            flags=list(row["flags"] or []),
            forced=row["forced"],
            signers=row["signers"],
            signatures=row["signatures"],
            tx_hash=row["tx_hash"],
            tx_nonce=row["tx_nonce"],
            tx_raw=row["tx_raw"],
            submitter=row["submitter"],
            block_number=row["block_number"],
        )


def load_epoch(conn: psycopg.Connection, pool: str, epoch: int) -> EpochRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM oracle_epochs WHERE pool = %s AND epoch = %s", (pool, epoch)
        ).fetchone()
    return EpochRow.from_row(row) if row else None


def latest_epoch(conn: psycopg.Connection, pool: str) -> EpochRow | None:
    """The pool's highest epoch row (the one in progress, or the last confirmed)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM oracle_epochs WHERE pool = %s ORDER BY epoch DESC LIMIT 1", (pool,)
        ).fetchone()
    return EpochRow.from_row(row) if row else None


def data_cutoff_of(conn: psycopg.Connection, pool: str, epoch: int) -> datetime | None:
    row = conn.execute(
        "SELECT data_cutoff FROM oracle_epochs WHERE pool = %s AND epoch = %s", (pool, epoch)
    ).fetchone()
    return row[0] if row else None


def save_computed(
    conn: psycopg.Connection,
    computed: ComputedEpoch,
    digest: bytes,
    state: EpochState,
    flags: list[Any],
    forced: bool,
) -> None:
    """Insert (or, for a recomputation, replace) the epoch row and its leaves, in one
    transaction."""
    a = computed.attestation
    with conn.transaction():
        conn.execute(
            """INSERT INTO oracle_epochs (pool, epoch, period_start, period_end, state,
                   data_cutoff, energy_wh, revenue_minor, investor_amount, device_count,
                   silent_devices, adjustment_energy_wh, adjustment_revenue_minor,
                   leaves_root, digest, flags, forced)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (pool, epoch) DO UPDATE SET
                   state = EXCLUDED.state, data_cutoff = EXCLUDED.data_cutoff,
                   energy_wh = EXCLUDED.energy_wh, revenue_minor = EXCLUDED.revenue_minor,
                   investor_amount = EXCLUDED.investor_amount,
                   device_count = EXCLUDED.device_count,
                   silent_devices = EXCLUDED.silent_devices,
                   adjustment_energy_wh = EXCLUDED.adjustment_energy_wh,
                   adjustment_revenue_minor = EXCLUDED.adjustment_revenue_minor,
                   leaves_root = EXCLUDED.leaves_root, digest = EXCLUDED.digest,
                   flags = oracle_epochs.flags || EXCLUDED.flags,
                   forced = EXCLUDED.forced, signers = NULL, signatures = NULL,
                   computed_at = now(), updated_at = now()
               WHERE oracle_epochs.state IN ('computed', 'withheld', 'flagged')""",
            (
                computed.pool,
                computed.epoch,
                computed.period_start,
                computed.period_end,
                state.value,
                computed.data_cutoff,
                a.energy_wh,
                a.revenue_minor,
                a.investor_amount,
                a.device_count,
                computed.silent_devices,
                computed.adjustment_energy_wh,
                computed.adjustment_revenue_minor,
                "0x" + a.leaves_root.hex(),
                "0x" + digest.hex(),
                json.dumps(flags),
                forced,
            ),
        )
        conn.execute(
            "DELETE FROM oracle_leaves WHERE pool = %s AND epoch = %s",
            (computed.pool, computed.epoch),
        )
        with conn.cursor().copy(
            """COPY oracle_leaves (pool, epoch, device_id, energy_wh, revenue_minor, sessions,
                   readings, first_seq, last_seq, uptime_seconds, meter_resets,
                   adjustment_energy_wh, adjustment_revenue_minor, start_energy_wh,
                   end_energy_wh, start_revenue_minor, end_revenue_minor, start_sessions,
                   end_sessions, late_readings, leaf, leaf_data, excluded,
                   exclusion_detail) FROM STDIN"""
        ) as copy:
            rows = zip(computed.devices, computed.leaves, computed.leaf_hashes, strict=True)
            for f, leaf, leaf_hash in rows:
                reason, detail = computed.exclusions.get(f.device_id, ("", None))
                copy.write_row(
                    (
                        computed.pool,
                        computed.epoch,
                        f.device_id,
                        f.energy_wh,
                        f.revenue_minor,
                        f.sessions,
                        f.readings,
                        f.first_seq,
                        f.last_seq,
                        f.uptime_seconds,
                        f.meter_resets,
                        f.adjustment_energy_wh,
                        f.adjustment_revenue_minor,
                        f.start_energy_wh,
                        f.end_energy_wh,
                        f.start_revenue_minor,
                        f.end_revenue_minor,
                        f.start_sessions,
                        f.end_sessions,
                        f.late_readings,
                        "0x" + leaf_hash.hex(),
                        leaf.signing_bytes(),
                        reason,
                        detail,
                    )
                )


def record_answer(
    conn: psycopg.Connection,
    pool: str,
    epoch: int,
    signer: str,
    digest: str | None,
    signature: str | None,
    agrees: bool,
    detail: str,
) -> None:
    conn.execute(
        """INSERT INTO oracle_signatures (pool, epoch, signer, digest, signature, agrees, detail)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (pool, epoch, signer) DO UPDATE SET digest = EXCLUDED.digest,
               signature = EXCLUDED.signature, agrees = EXCLUDED.agrees,
               detail = EXCLUDED.detail, created_at = now()""",
        (pool, epoch, signer, digest, signature, agrees, detail),
    )


def transition(
    conn: psycopg.Connection,
    pool: str,
    epoch: int,
    from_states: tuple[EpochState, ...],
    to_state: EpochState,
    **columns: Any,
) -> bool:
    """Move an epoch to `to_state` (setting `columns`) if it is in one of `from_states`."""
    stamp = {
        EpochState.SIGNED: "signed_at",
        EpochState.SUBMITTED: "submitted_at",
        EpochState.CONFIRMED: "confirmed_at",
    }.get(to_state)
    sets = ["state = %(to)s", "updated_at = now()"]
    if stamp:
        sets.append(f"{stamp} = now()")
    for name in columns:
        if name == "flags":
            sets.append("flags = flags || %(flags)s::jsonb")
        else:
            sets.append(f"{name} = %({name})s")
    params = dict(columns, to=to_state.value, pool=pool, epoch=epoch)
    if "flags" in params:
        params["flags"] = json.dumps(params["flags"])
    params["from_states"] = [s.value for s in from_states]
    cur = conn.execute(
        f"UPDATE oracle_epochs SET {', '.join(sets)} WHERE pool = %(pool)s AND epoch = %(epoch)s"
        " AND state = ANY(%(from_states)s)",
        params,
    )
    return cur.rowcount == 1
