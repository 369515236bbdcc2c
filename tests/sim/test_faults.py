"""Every fault puts the intended bytes on the wire (checked against the platform's parser)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from itertools import islice

import pytest

from gridshare.core.errors import ConfigError, PayloadError
from gridshare.core.payloads import (
    MAX_PAYLOAD_BYTES,
    DeviceType,
    QuarantineReason,
    canonical_bytes,
    encode_reading,
    parse_telemetry,
)
from gridshare.core.signing import Signer, recover
from gridshare.gateway.identity import new_identity
from gridshare.sim.device import Outgoing, SimDevice, generate
from gridshare.sim.faults import FAULTS, FaultPlan

START = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
IDENTITY = new_identity("cp-000042", DeviceType.CHARGING_PILE, "charging-pile-1")


def emitted(faults: str, readings: int = 200) -> list[tuple[list[Outgoing], float]]:
    device = SimDevice(IDENTITY, 11, START, 300.0, FaultPlan.parse(faults))
    batches = generate([device], START + 1e9)
    return [(messages, offline) for _, messages, offline in islice(batches, readings)]


def messages(faults: str, readings: int = 200) -> list[Outgoing]:
    return [m for batch, _ in emitted(faults, readings) for m in batch]


def reading_of(message: Outgoing) -> dict:
    reading, canonical = parse_telemetry(message.payload)
    return {"reading": reading, "signer": recover(canonical, reading.sig)}


def test_fault_plan_parsing() -> None:
    assert FaultPlan.parse("disconnect,duplicate:0.5", 0.02).rates == {
        "disconnect": 0.02,
        "duplicate": 0.5,
    }
    assert set(FaultPlan.parse("all").rates) == set(FAULTS)
    assert not FaultPlan.parse("")
    for bad in ("meteor", "reset:2", "skew:x"):
        with pytest.raises(ConfigError):
            FaultPlan.parse(bad)


def test_a_kept_signer_encodes_like_a_key_and_recovers_to_the_device() -> None:
    fields = {"v": 1, "device_id": "cp-000042", "seq": 3, "power_w": 7200, "note": "é"}
    payload = encode_reading(fields, Signer(IDENTITY.key_bytes))
    assert payload == encode_reading(fields, IDENTITY.key_bytes)
    untrusted = json.loads(payload)
    sig = untrusted.pop("sig")
    assert recover(canonical_bytes(untrusted), sig) == IDENTITY.address


def test_no_faults_means_only_valid_readings_in_seq_order() -> None:
    out = messages("")
    assert {m.kind for m in out} == {"reading"}
    assert [m.seq for m in out] == list(range(1, 201))
    assert all(reading_of(m)["signer"] == IDENTITY.address for m in out)


def test_duplicate_sends_the_same_bytes_twice() -> None:
    out = messages("duplicate:0.3")
    duplicates = [i for i, m in enumerate(out) if m.kind == "duplicate"]
    assert 30 < len(duplicates) < 90
    for index in duplicates:
        assert out[index].payload == out[index - 1].payload and out[index - 1].kind == "reading"


def test_reorder_swaps_a_reading_with_the_next() -> None:
    seqs = [m.seq for m in messages("reorder:0.2")]
    assert sorted(seqs) == list(range(1, 201))
    swaps = [i for i in range(1, len(seqs)) if seqs[i] < seqs[i - 1]]
    assert len(swaps) > 10
    for i in swaps:
        assert seqs[i] == seqs[i - 1] - 1


def test_skew_shifts_the_device_clock_only() -> None:
    clean = [reading_of(m)["reading"] for m in messages("")]
    skewed = [reading_of(m)["reading"] for m in messages("skew:0.1")]
    shifts = [(s.ts - c.ts).total_seconds() for s, c in zip(skewed, clean, strict=True)]
    moved = [abs(x) for x in shifts if x]
    assert moved and all(60 <= x <= 3600 for x in moved)
    for s, c in zip(skewed, clean, strict=True):
        assert s.model_dump(exclude={"ts", "sig"}) == c.model_dump(exclude={"ts", "sig"})


def test_garbage_variants_fail_parsing_as_intended() -> None:
    out = [m for m in messages("garbage:0.5", 400) if m.kind.startswith("garbage:")]
    expected = {
        "garbage:not_json": QuarantineReason.PARSE_ERROR,
        "garbage:invalid_utf8": QuarantineReason.PARSE_ERROR,
        "garbage:blob_oversize": QuarantineReason.TOO_LARGE,
        "garbage:nan": QuarantineReason.PARSE_ERROR,
        "garbage:wrong_types": QuarantineReason.SCHEMA_ERROR,
    }
    assert set(Counter(m.kind for m in out)) == set(expected)
    for message in out:
        with pytest.raises(PayloadError) as caught:
            parse_telemetry(message.payload)
        assert caught.value.reason is expected[message.kind], message.kind
        if message.kind == "garbage:blob_oversize":
            assert len(message.payload) == MAX_PAYLOAD_BYTES + 512
        if message.kind == "garbage:invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                message.payload.decode()
        if message.kind == "garbage:nan":
            assert b"NaN" in message.payload


def test_badsig_readings_do_not_recover_to_the_device() -> None:
    out = messages("badsig:0.3")
    bad = [m for m in out if m.kind == "badsig"]
    assert len(bad) > 20
    for message in bad:
        try:
            signer = reading_of(message)["signer"]
        except ValueError:
            continue  # a corrupted signature that does not even recover
        assert signer != IDENTITY.address
    assert sorted(m.seq for m in out) == list(range(1, 201))


def test_reset_reports_zeroed_meters_then_the_true_ones_continue() -> None:
    out = messages("reset:0.1")
    readings = [(m.kind, reading_of(m)["reading"]) for m in out]
    resets = [i for i, (kind, _) in enumerate(readings) if kind == "reset"]
    assert resets
    true_meters = [r.energy_wh_total for kind, r in readings if kind == "reading"]
    assert true_meters == sorted(true_meters)
    for i in resets:
        earlier = [r for kind, r in readings[:i] if kind == "reading"]
        assert earlier and max(r.energy_wh_total + r.revenue_minor_total for r in earlier) > 0
        reading = readings[i][1]
        assert (reading.energy_wh_total, reading.sessions_total, reading.revenue_minor_total) == (
            0,
            0,
            0,
        )
        assert reading.device_id == IDENTITY.device_id


def test_disconnect_asks_to_stay_offline_for_some_intervals() -> None:
    offline = [away for _, away in emitted("disconnect:0.2") if away]
    assert len(offline) > 20
    assert all(2 * 300 * 0.9 <= away <= 12 * 300 * 1.1 for away in offline)
