"""Bounded quarantine: what of a rejected message is stored, how often, and for how long.

A rejected message is never dropped silently, but storing every one whole lets a single
device fill the database. So: the raw bytes are kept up to `payload_bytes`, with the size and
SHA-256 of the whole; each device (the id its topic claims, which the broker's ACL vouches
for) may store `burst` rows at once and `per_minute` after that (a token bucket); rejections
beyond that are acknowledged and counted (`gridshare_ingest_quarantine_unstored_total`) but
not stored. The budget is per worker: N workers store at most N times as much. Rows older than
the retention are deleted by `prune`, which the worker runs on a schedule.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import psycopg

from gridshare.core.settings import Settings
from gridshare.ingest.validate import Rejection, claimed_id

MAX_BUCKETS = 100_000  # devices tracked before full buckets are forgotten
PRUNE_LOCK_KEY = 0x71756172  # "quar": one worker prunes at a time
PRUNE_BATCH = 10_000


@dataclass
class QuarantinePolicy:
    """Per-device rate limit and payload cap for quarantine rows (defaults: the settings')."""

    payload_bytes: int = 1024
    burst: int = 20
    per_minute: float = 6.0
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, at

    @classmethod
    def from_settings(cls, settings: Settings) -> QuarantinePolicy:
        return cls(
            payload_bytes=settings.quarantine_payload_bytes,
            burst=settings.quarantine_device_burst,
            per_minute=settings.quarantine_device_per_minute,
        )

    def admit(self, rejections: list[Rejection]) -> tuple[list[Rejection], list[Rejection]]:
        """(to store, only to count), in order."""
        now = time.monotonic()
        stored: list[Rejection] = []
        counted: list[Rejection] = []
        for rejection in rejections:
            key = claimed_id(rejection.message.topic) or ""
            (stored if self._take(key, now) else counted).append(rejection)
        return stored, counted

    def _take(self, key: str, now: float) -> bool:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_minute / 60.0)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_BUCKETS:
            self._forget_full(now)
        return True

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        refill = self.per_minute / 60.0
        self._buckets = {
            key: (tokens, at)
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * refill < self.burst
        }

    def kept(self, untrusted_payload: bytes) -> tuple[bytes, int, bytes]:
        """(the bytes stored, size of the whole, SHA-256 of the whole)."""
        return (
            untrusted_payload[: self.payload_bytes],
            len(untrusted_payload),
            hashlib.sha256(untrusted_payload).digest(),
        )


def prune(conn: psycopg.Connection, retention_days: int) -> int | None:
    """Delete quarantine rows older than the retention, in batches; the count deleted, or
    None if another worker is pruning right now."""
    deleted = 0
    while True:
        with conn.transaction():
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (PRUNE_LOCK_KEY,))
            if not locked.fetchone()[0]:
                return None
            rows = conn.execute(
                "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine"
                " WHERE received_at < now() - make_interval(days => %s) LIMIT %s)",
                (retention_days, PRUNE_BATCH),
            ).rowcount
        deleted += rows
        if rows < PRUNE_BATCH:
            return deleted
