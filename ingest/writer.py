"""One batch, one transaction: readings, device_state, quarantine and the live notification.

Inside the transaction the batch's `device_state` rows are locked in device-id order, so
two workers never decide duplicates or monotonicity for one device at the same time, and
duplicates are decided before anything is written. A reading whose seq is stored with other
signed bytes is quarantined as `conflicting_reading` and flags its device (`device_flags`,
in the same transaction). The fast path needs no telemetry lookups: `last_seq` is the
highest seq stored, so a reading above it is new and is compared with the meters held in
`device_state`. Readings at or below `last_seq` (replays, redeliveries) are looked up in
telemetry; so are those of a device with no reading in `device_state` if one probe finds
telemetry rows of it all the same (restored or loaded by hand).

That lookup comes in two steps, so that on a hypertable it does not touch every chunk. First
each reading's stored twin at its own device time: `(device_id, seq, time)` equal to the
reading's, with the batch's lowest and highest device times written into the statement as
constant bounds, so the planner keeps only the chunks of that span. A redelivered copy has
the device time of the stored one (the time is part of the signed bytes), so every plain
duplicate is decided there, and so is a conflicting copy signed with the same time; their
neighbours are never needed. Only a reading with no twin at its time goes on to the
unbounded lookup (`NEIGHBOURS`, counted as `Outcome.unbounded`): whether its seq is stored
at any time (a conflicting copy may carry a fresh time while its twin sits in any chunk) and
its stored neighbours by seq, which may lie in any chunk too, since nothing ties a device's
seqs to its clock. That is an out-of-order new reading, an equivocation with another time,
or a restored device's reading; ingest finds conflicts anywhere, as before.

The accepted readings, with their evidence (signed bytes and signature), are COPYed into a
temporary staging table and moved with `INSERT … SELECT … ON CONFLICT DO NOTHING`: a net
that never aborts a batch. (It used to add `WHERE NOT EXISTS (same device_id, seq)` for
TimescaleDB, whose unique index is (device_id, seq, time); with the duplicates already
decided under the lock that only cost a scan: the planner, seeing an unanalysed staging
table, hashed the whole telemetry table for every batch.)

`device_state` follows the readings in the same statement that moves them (SQL over the
rows just inserted, no Python per reading): online, `last_seen` the latest time heard,
`readings` counted, and the meters of the highest seq if above `last_seq`. Status messages
are applied after it: in arrival order the last event decides `online` (a reading means
online), and an `online` status also counts for `last_seen`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from gridshare.core.payloads import QuarantineReason
from gridshare.ingest.decide import Capacity, Point, Stored, decide
from gridshare.ingest.quarantine import QuarantinePolicy
from gridshare.ingest.validate import Reading, Rejection, StatusChange, Verdict, claimed_id

NOTIFY_CHANNEL = "gridshare_device"
NOTIFY_MAX_BYTES = 7000  # PostgreSQL refuses payloads of 8000 bytes or more
COLUMNS = (
    "time, device_id, seq, status, power_w, soc_pct, energy_wh_total, sessions_total,"
    " revenue_minor_total, currency, received_at, signed_bytes, sig"
)
# COLUMNS' types: binary COPY skips formatting and parsing text
STAGING_TYPES = ("timestamptz", "text", "int8", "text", "float8", "float8", "int8", "int8", "int8",
                 "text", "timestamptz", "bytea", "bytea")  # fmt: skip
STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_staging"
    " (LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
)
LATEST = (
    "status",
    "power_w",
    "soc_pct",
    "energy_wh_total",
    "sessions_total",
    "revenue_minor_total",
)
NEWER = "(d.last_seq IS NULL OR p.seq > d.last_seq)"
MOVE_AND_FOLD = f"""WITH moved AS (
  INSERT INTO telemetry ({COLUMNS})
  SELECT {COLUMNS} FROM ingest_staging
  ON CONFLICT DO NOTHING
  RETURNING device_id, seq, time, received_at, {", ".join(LATEST)}),
latest AS (
  SELECT DISTINCT ON (device_id) *, count(*) OVER w AS n, max(received_at) OVER w AS heard
  FROM moved WINDOW w AS (PARTITION BY device_id) ORDER BY device_id, seq DESC),
folded AS (
  UPDATE device_state d SET online = true, last_seen = greatest(d.last_seen, p.heard),
    readings = d.readings + p.n,
    last_ts = CASE WHEN {NEWER} THEN p.time ELSE d.last_ts END,
    last_seq = CASE WHEN {NEWER} THEN p.seq ELSE d.last_seq END,
    {", ".join(f"{c} = CASE WHEN {NEWER} THEN p.{c} ELSE d.{c} END" for c in LATEST)},
    updated_at = now()
  FROM latest p WHERE d.device_id = p.device_id)
SELECT device_id, seq FROM moved"""
STATUSES = """UPDATE device_state d
SET online = coalesce(u.online, d.online), last_seen = greatest(d.last_seen, u.heard),
    updated_at = now()
FROM unnest(%s::text[], %s::bool[], %s::timestamptz[]) AS u(device_id, online, heard)
WHERE d.device_id = u.device_id
  AND (d.online IS DISTINCT FROM coalesce(u.online, d.online)
       OR d.last_seen IS DISTINCT FROM greatest(d.last_seen, u.heard))
RETURNING d.device_id"""
TWINS = """SELECT c.i, t.signed_bytes
FROM unnest(%s::int[], %s::text[], %s::int8[], %s::timestamptz[]) AS c(i, d, s, ts)
JOIN LATERAL (SELECT t.signed_bytes FROM telemetry t
  WHERE t.device_id = c.d AND t.seq = c.s AND t.time = c.ts
    AND t.time BETWEEN {low} AND {high} LIMIT 1) t ON true"""
NEIGHBOURS = """SELECT c.i,
  (SELECT t.signed_bytes FROM telemetry t WHERE t.device_id = c.d AND t.seq = c.s LIMIT 1),
  b.seq, b.energy_wh_total, b.revenue_minor_total, b.sessions_total, b.time,
  a.seq, a.energy_wh_total, a.revenue_minor_total, a.sessions_total, a.time
FROM unnest(%s::int[], %s::text[], %s::int8[]) AS c(i, d, s)
LEFT JOIN LATERAL (SELECT seq, energy_wh_total, revenue_minor_total, sessions_total, time
  FROM telemetry t WHERE t.device_id = c.d AND t.seq < c.s ORDER BY t.seq DESC LIMIT 1) b ON true
LEFT JOIN LATERAL (SELECT seq, energy_wh_total, revenue_minor_total, sessions_total, time
  FROM telemetry t WHERE t.device_id = c.d AND t.seq > c.s ORDER BY t.seq LIMIT 1) a ON true"""
FLAG = """INSERT INTO device_flags (device_id, reason, detail, seq, signed_bytes, sig, received_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::int8[], %s::bytea[], %s::bytea[],
  %s::timestamptz[])"""
SWEEP = """WITH stale AS (
  SELECT device_id FROM device_state
  WHERE online AND (last_seen IS NULL OR last_seen < now() - make_interval(secs => %s))
  ORDER BY device_id FOR UPDATE SKIP LOCKED)
UPDATE device_state d SET online = false, updated_at = now()
FROM stale WHERE d.device_id = stale.device_id
RETURNING d.device_id"""


@dataclass
class Outcome:
    """What a committed batch did with each message."""

    stored: list[Reading] = field(default_factory=list)
    duplicates: list[Reading] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)
    quarantined: list[Rejection] = field(default_factory=list)
    unstored: list[Rejection] = field(default_factory=list)  # quarantined, over the budget
    devices: list[str] = field(default_factory=list)  # device_state rows changed
    unbounded: int = 0  # readings with no stored twin at their time, looked up in every chunk


class BatchWriter:
    """Writes verdicts on one connection (autocommit; each batch is an explicit transaction).
    `capacity(device_id)` bounds a device's meters (None: not bounded). Without
    `keep_evidence` (only to measure what keeping it costs) rows get empty evidence, which
    nobody can verify."""

    def __init__(
        self,
        conn: psycopg.Connection,
        capacity: Callable[[str], Capacity | None] = lambda device_id: None,
        keep_evidence: bool = True,
        quarantine: QuarantinePolicy | None = None,
    ) -> None:
        self.conn = conn
        self.capacity = capacity
        self.keep_evidence = keep_evidence
        self.quarantine = quarantine or QuarantinePolicy()
        for statement in STAGING:
            conn.execute(statement)
        self._with_state: set[str] = set()

    def write(self, verdicts: list[Verdict]) -> Outcome:
        readings = [v for v in verdicts if isinstance(v, Reading)]
        statuses = [v for v in verdicts if isinstance(v, StatusChange)]
        outcome = Outcome(quarantined=[v for v in verdicts if isinstance(v, Rejection)])
        device_ids = sorted(
            {r.telemetry.device_id for r in readings} | {s.device_id for s in statuses}
        )
        self._create_states(device_ids)
        with self.conn.transaction():
            states = self._lock_states(device_ids)
            readings = [r for r in readings if self._known(r, states, outcome)]
            statuses = [s for s in statuses if self._known(s, states, outcome)]
            around, outcome.unbounded = self._stored_around(readings, states)
            decision = decide(
                [r.telemetry for r in readings],
                around,
                [r.signed for r in readings],
                self._capacities(readings),
            )
            outcome.duplicates = [readings[i] for i in decision.duplicates]
            for reason, details in (
                (QuarantineReason.METER_REGRESSION, decision.regressions),
                (QuarantineReason.IMPLAUSIBLE_READING, decision.implausible),
                (QuarantineReason.CONFLICTING_READING, decision.conflicts),
            ):
                outcome.quarantined += [
                    Rejection(readings[i].message, reason, detail) for i, detail in details.items()
                ]
            self._flag([(readings[i], detail) for i, detail in decision.conflicts.items()])
            accepted = [readings[i] for i in decision.accepted]
            outcome.stored, late_duplicates = self._insert(accepted)
            outcome.duplicates += late_duplicates
            outcome.statuses = statuses
            outcome.devices = sorted(
                {r.telemetry.device_id for r in outcome.stored}
                | set(self._apply_statuses(outcome.stored, statuses))
            )
            outcome.unstored = self._quarantine(outcome.quarantined)
            self._notify(outcome.devices)
        self._with_state.update(states)
        return outcome

    def sweep_offline(self, offline_seconds: float) -> list[str]:
        """Mark devices silent for longer than `offline_seconds` offline; their ids."""
        with self.conn.transaction():
            changed = [r[0] for r in self.conn.execute(SWEEP, (offline_seconds,))]
            self._notify(changed)
        return changed

    def _create_states(self, device_ids: list[str]) -> None:
        """Give new devices a device_state row, committed at once and apart from the batch:
        two workers inserting rows inside their batches could each hold one the other
        needs to lock next."""
        missing = [d for d in device_ids if d not in self._with_state]
        if missing:
            self.conn.execute(
                "INSERT INTO device_state (device_id) SELECT device_id FROM devices"
                " WHERE device_id = ANY(string_to_array(%s, ','))"
                " ORDER BY device_id ON CONFLICT DO NOTHING",
                (",".join(missing),),
            )

    def _lock_states(self, device_ids: list[str]) -> dict[str, Point | None]:
        """Lock the batch's device_state rows in id order; each device's latest stored
        reading (seq, meters and device time), None before its first."""
        if not device_ids:
            return {}
        rows = self.conn.execute(
            "SELECT device_id, last_seq, energy_wh_total, revenue_minor_total, sessions_total,"
            " extract(epoch FROM last_ts)::float8"
            " FROM device_state WHERE device_id = ANY(string_to_array(%s, ','))"
            " ORDER BY device_id FOR UPDATE",
            (",".join(device_ids),),
        ).fetchall()
        return {row[0]: Point(*row[1:]) if row[1] is not None else None for row in rows}

    def _capacities(self, readings: list[Reading]) -> dict[str, Capacity]:
        devices = {r.telemetry.device_id for r in readings}
        return {d: bound for d in devices if (bound := self.capacity(d)) is not None}

    def _flag(self, conflicts: list[tuple[Reading, str]]) -> None:
        """Flag the devices of conflicting readings, keeping each conflicting copy."""
        if not conflicts:
            return
        self.conn.execute(
            FLAG,
            (
                [r.telemetry.device_id for r, _ in conflicts],
                [QuarantineReason.CONFLICTING_READING.value] * len(conflicts),
                [detail for _, detail in conflicts],
                [r.telemetry.seq for r, _ in conflicts],
                [r.signed for r, _ in conflicts],
                [signature_bytes(r.telemetry.sig) for r, _ in conflicts],
                [_wall(r.message.received_at) for r, _ in conflicts],
            ),
        )

    @staticmethod
    def _known(verdict: Reading | StatusChange, states: dict, outcome: Outcome) -> bool:
        """False, with a rejection, for a device deregistered since validation."""
        if isinstance(verdict, Reading):
            device_id = verdict.telemetry.device_id
        else:
            device_id = verdict.device_id
        if device_id in states:
            return True
        outcome.quarantined.append(
            Rejection(verdict.message, QuarantineReason.UNKNOWN_DEVICE, "not registered")
        )
        return False

    def _stored_around(
        self, readings: list[Reading], states: dict[str, Point | None]
    ) -> tuple[list[Stored], int]:
        """Each reading's stored neighbours: from device_state when its seq is above the
        highest stored (the fast path), else its twin at its own time, else looked up in
        every chunk; and how many took that last, unbounded lookup."""
        stored: list[Stored] = []
        lookups: list[int] = []
        restored = self._with_rows([d for d, latest in states.items() if latest is None])
        for index, reading in enumerate(readings):
            latest = states[reading.telemetry.device_id]
            if latest is not None and reading.telemetry.seq > latest.seq:
                stored.append(Stored(before=latest))
            else:
                stored.append(Stored())
                if latest is not None or reading.telemetry.device_id in restored:
                    lookups.append(index)
        if not lookups:
            return stored, 0
        twins = self._twins(readings, lookups)
        for index, signed in twins.items():
            stored[index] = Stored(True, signed=signed)
        unbounded = [i for i in lookups if i not in twins]
        if unbounded:
            rows = self.conn.execute(
                NEIGHBOURS,
                (
                    unbounded,
                    [readings[i].telemetry.device_id for i in unbounded],
                    [readings[i].telemetry.seq for i in unbounded],
                ),
            ).fetchall()
            for index, signed, *sides in rows:
                before = _point(sides[:5])
                after = _point(sides[5:])
                stored[index] = Stored(signed is not None, before, after, signed or b"")
        return stored, len(unbounded)

    def _twins(self, readings: list[Reading], lookups: list[int]) -> dict[int, bytes]:
        """The signed bytes stored under each looked-up reading's (device_id, seq, time),
        by index, for those stored: only the chunks of the batch's device times are read."""
        times = [readings[i].telemetry.ts for i in lookups]
        rows = self.conn.execute(
            twin_probe(min(times), max(times)),
            (
                lookups,
                [readings[i].telemetry.device_id for i in lookups],
                [readings[i].telemetry.seq for i in lookups],
                times,
            ),
        ).fetchall()
        return {index: signed or b"" for index, signed in rows}

    def _with_rows(self, device_ids: list[str]) -> set[str]:
        """Which of these devices, with no stored reading in device_state, have telemetry
        rows all the same (restored or loaded by hand): one index probe per device, so a
        new device's readings need no lookup each."""
        if not device_ids:
            return set()
        rows = self.conn.execute(
            "SELECT d FROM unnest(%s::text[]) AS d"
            " WHERE EXISTS (SELECT 1 FROM telemetry t WHERE t.device_id = d)",
            (device_ids,),
        ).fetchall()
        return {row[0] for row in rows}

    def _insert(self, accepted: list[Reading]) -> tuple[list[Reading], list[Reading]]:
        """COPY into staging, move what is not stored yet and fold it into device_state;
        (stored, found already stored)."""
        if not accepted:
            return [], []
        keep = self.keep_evidence
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY ingest_staging ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(STAGING_TYPES)
                for reading in accepted:
                    t = reading.telemetry
                    copy.write_row(
                        (
                            t.ts,
                            t.device_id,
                            t.seq,
                            t.status,
                            t.power_w,
                            t.soc_pct,
                            t.energy_wh_total,
                            t.sessions_total,
                            t.revenue_minor_total,
                            t.currency,
                            _wall(reading.message.received_at),
                            reading.signed if keep else b"",
                            signature_bytes(t.sig) if keep else b"",
                        )
                    )
            inserted = set(cur.execute(MOVE_AND_FOLD).fetchall())
        stored = [r for r in accepted if (r.telemetry.device_id, r.telemetry.seq) in inserted]
        late = [r for r in accepted if (r.telemetry.device_id, r.telemetry.seq) not in inserted]
        return stored, late

    def _apply_statuses(self, stored: list[Reading], statuses: list[StatusChange]) -> list[str]:
        """Status messages, after the readings' fold; the ids of rows they changed. A status
        decides `online` only if it arrived after the device's last stored reading of the
        batch; an `online` status is a sign of life for `last_seen`."""
        last_reading: dict[str, float] = {}
        for reading in stored:
            device_id, at = reading.telemetry.device_id, reading.message.received_mono
            last_reading[device_id] = max(at, last_reading.get(device_id, at))
        online: dict[str, bool | None] = {}
        heard: dict[str, datetime | None] = {}
        for status in statuses:  # in arrival order
            if status.online is None:
                continue
            device_id, message = status.device_id, status.message
            if message.received_mono > last_reading.get(device_id, float("-inf")):
                online[device_id] = status.online
            else:
                online.setdefault(device_id, None)
            if status.online:
                heard[device_id] = _wall(message.received_at)
            else:
                heard.setdefault(device_id, None)
        if not online:
            return []
        ids = sorted(online)
        rows = self.conn.execute(
            STATUSES, (ids, [online[d] for d in ids], [heard[d] for d in ids])
        ).fetchall()
        return [row[0] for row in rows]

    def _quarantine(self, rejections: list[Rejection]) -> list[Rejection]:
        """Store what the per-device budget admits, payloads capped; the rest, unstored."""
        stored, unstored = self.quarantine.admit(rejections)
        if not stored:
            return unstored
        with (
            self.conn.cursor() as cur,
            cur.copy(
                "COPY quarantine (received_at, topic, reason, detail, payload, device_id,"
                " payload_bytes, payload_sha256) FROM STDIN"
            ) as copy,
        ):
            copy.set_types(
                ["timestamptz", "text", "text", "text", "bytea", "text", "int4", "bytea"]
            )
            for rejection in stored:
                message = rejection.message
                payload, size, digest = self.quarantine.kept(message.payload)
                copy.write_row(
                    (
                        _wall(message.received_at),
                        _text(message.topic),
                        rejection.reason.value,
                        _text(rejection.detail),
                        payload,
                        _claimed(message.topic),
                        size,
                        digest,
                    )
                )
        return unstored

    def _notify(self, device_ids: list[str]) -> None:
        """NOTIFY the API's live stream with the changed ids, in payloads under the limit."""
        chunk: list[str] = []
        size = 0
        for device_id in device_ids:
            if size + len(device_id) + 3 > NOTIFY_MAX_BYTES:
                self._send(chunk)
                chunk, size = [], 0
            chunk.append(device_id)
            size += len(device_id) + 3
        if chunk:
            self._send(chunk)

    def _send(self, device_ids: list[str]) -> None:
        payload = json.dumps({"devices": device_ids}, separators=(",", ":"))
        self.conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))


def twin_probe(low: datetime, high: datetime) -> sql.Composed:
    """`TWINS` for device times from `low` to `high`, as constants: the planner excludes
    the other chunks of a hypertable when it plans the statement, whatever plan it keeps."""
    return sql.SQL(TWINS).format(low=sql.Literal(low), high=sql.Literal(high))


def _point(row: list) -> Point | None:
    """A stored neighbour from (seq, energy, revenue, sessions, time), None if absent."""
    if row[0] is None:
        return None
    return Point(*row[:4], row[4].timestamp())


def signature_bytes(sig: str) -> bytes:
    """The 65 bytes of a validated `0x…` signature."""
    return bytes.fromhex(sig[2:])


def _wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _text(untrusted: str) -> str:
    """PostgreSQL text cannot hold NUL; keep everything else as received."""
    return untrusted.replace("\x00", "\\x00")[:2000]


def _claimed(topic: str) -> str | None:
    claimed = claimed_id(topic)
    return _text(claimed)[:200] if claimed else None
