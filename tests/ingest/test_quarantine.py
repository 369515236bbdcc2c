"""Quarantine bounds: the per-device token bucket and payload cap (pure logic), and the
retention prune against the real database."""

from __future__ import annotations

import hashlib
import time

import psycopg

from gridshare.core.payloads import QuarantineReason
from gridshare.ingest.quarantine import QuarantinePolicy, prune
from gridshare.ingest.validate import Message, Rejection


def rejection(device_id: str, payload: bytes = b"x") -> Rejection:
    topic = f"gridshare/v1/devices/{device_id}/telemetry"
    message = Message(1, 1, 0, topic, payload, 0.0, 0.0)
    return Rejection(message, QuarantineReason.PARSE_ERROR, "bad")


def test_each_device_stores_its_burst_then_is_only_counted() -> None:
    policy = QuarantinePolicy(burst=3, per_minute=1e-9)
    stored, counted = policy.admit([rejection("cp-a")] * 5 + [rejection("cp-b")] * 2)
    assert [r.message.topic.split("/")[3] for r in stored] == ["cp-a"] * 3 + ["cp-b"] * 2
    assert len(counted) == 2


def test_the_bucket_refills_with_time() -> None:
    policy = QuarantinePolicy(burst=1, per_minute=60 * 1000)  # a token per millisecond
    assert len(policy.admit([rejection("cp-a")])[0]) == 1
    assert len(policy.admit([rejection("cp-a")] * 2)[1]) >= 1
    time.sleep(0.01)
    assert len(policy.admit([rejection("cp-a")])[0]) == 1


def test_payload_is_capped_with_size_and_hash_of_the_whole() -> None:
    payload = bytes(range(256)) * 64
    kept, size, digest = QuarantinePolicy(payload_bytes=100).kept(payload)
    assert kept == payload[:100] and size == len(payload)
    assert digest == hashlib.sha256(payload).digest()


def test_prune_deletes_only_rows_past_the_retention(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO quarantine (received_at, topic, reason, detail, payload, device_id)"
        " SELECT now() - make_interval(days => d), 't', 'parse_error', 'prune-test',"
        " '\\x00', 'cp-prune'"
        " FROM unnest(ARRAY[1, 5, 40, 41]) AS d"
    )
    assert prune(conn, retention_days=30) >= 2
    left = conn.execute("SELECT count(*) FROM quarantine WHERE device_id = 'cp-prune'").fetchone()[
        0
    ]
    assert left == 2
