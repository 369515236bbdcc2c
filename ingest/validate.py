"""Turning one untrusted MQTT message into a reading, a status change or a rejection.

Checks run cheapest first: size, JSON, schema (`parse_telemetry`), that the payload's
`device_id` is the id in the topic, that the device is registered, then the signature over
the canonical bytes against the key the device held on-chain at the reading's time (or, for
a device the chain does not know, the database's address; see `keys.py`). Only then, so
that they judge what the device itself signed: the currency must be the pool's
(`wrong_currency`) and the device's clock within the window around receipt
(`bad_timestamp`). Duplicates, conflicting copies and the meter rules need the stored
readings and are decided by the writer inside the batch's transaction.

A payload whose `device_id` differs from the topic's is quarantined as `unknown_device`: the
broker's ACL vouches only for the topic's id, so the publisher is not known to be the device
it claims to be (SPEC §4 "ACL of the claimed id").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import NamedTuple

from gridshare.core.errors import PayloadError, SignatureError
from gridshare.core.payloads import (
    DEVICE_ID_PATTERN,
    MAX_PAYLOAD_BYTES,
    TOPIC_RE,
    QuarantineReason,
    Telemetry,
    parse_telemetry,
)
from gridshare.core.signing import recover
from gridshare.ingest.devices import DeviceDirectory
from gridshare.ingest.keys import OnchainSigners

DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
STATUS_WORDS = {"online": True, "offline": False}


class Message(NamedTuple):
    """A message as received, not yet acknowledged; `epoch` ties it to an MQTT session.
    (A named tuple: made from the receiver's raw tuples without per-field work.)"""

    mid: int
    qos: int
    epoch: int
    topic: str
    payload: bytes
    received_at: float  # wall clock, seconds
    received_mono: float


class TimeWindow(NamedTuple):
    """How far a device's `ts` may be ahead of receipt, or behind it (seconds)."""

    ahead_seconds: float = 300.0
    backfill_seconds: float = 2_592_000.0


@dataclass(frozen=True)
class Reading:
    message: Message
    telemetry: Telemetry
    signed: bytes  # the canonical bytes the signature was verified over


@dataclass(frozen=True)
class StatusChange:
    message: Message
    device_id: str
    online: bool | None  # None: an empty payload, the retained status being cleared


@dataclass(frozen=True)
class Rejection:
    message: Message
    reason: QuarantineReason
    detail: str


Verdict = Reading | StatusChange | Rejection


def claimed_id(topic: str) -> str | None:
    """The device id in a device topic, as claimed (not yet checked against anything)."""
    match = TOPIC_RE.match(topic)
    return match.group(1) if match else None


def classify(
    message: Message,
    directory: DeviceDirectory,
    window: TimeWindow = TimeWindow(),
    signers: OnchainSigners | None = None,
) -> Verdict:
    """Decide what one message is. Never raises on any input."""
    try:
        return _classify(message, directory, window, signers)
    except Exception as exc:  # an unforeseen failure on untrusted input: the worker goes on
        return Rejection(message, QuarantineReason.SCHEMA_ERROR, f"unexpected: {exc!r}"[:300])


def unknown_claim(verdict: Verdict) -> str | None:
    """The claimed id of a message rejected as `unknown_device`: the directory may not have
    known the device *yet* when the message was classified, so the caller makes sure it is
    current for that id and classifies the message again."""
    if isinstance(verdict, Rejection) and verdict.reason is QuarantineReason.UNKNOWN_DEVICE:
        return claimed_id(verdict.message.topic) or ""
    return None


def _classify(
    message: Message,
    directory: DeviceDirectory,
    window: TimeWindow,
    signers: OnchainSigners | None,
) -> Verdict:
    match = TOPIC_RE.match(message.topic)
    if match is None:
        return Rejection(message, QuarantineReason.SCHEMA_ERROR, "not a device topic")
    topic_id, kind = match.groups()
    try:
        if kind == "status":
            return StatusChange(message, topic_id, _status(message.payload, topic_id, directory))
        return Reading(message, *_telemetry(message, topic_id, directory, window, signers))
    except PayloadError as exc:
        return Rejection(message, exc.reason, exc.detail)


def _telemetry(
    message: Message,
    topic_id: str,
    directory: DeviceDirectory,
    window: TimeWindow,
    signers: OnchainSigners | None,
) -> tuple[Telemetry, bytes]:
    reading, canonical = parse_telemetry(message.payload)
    if reading.device_id != topic_id:
        raise PayloadError(
            QuarantineReason.UNKNOWN_DEVICE,
            f"payload device_id {reading.device_id} published on the topic of {topic_id[:80]}",
        )
    address: str | None = _registered(topic_id, directory)
    source = "registered"
    if signers is not None:
        on_chain, key = signers.signer(topic_id, reading.ts)
        if on_chain:
            address, source = key, "on-chain key at ts"
    try:
        signer = recover(canonical, reading.sig)
    except SignatureError as exc:
        raise PayloadError(QuarantineReason.BAD_SIGNATURE, str(exc)) from exc
    if address is None or signer.lower() != address.lower():
        raise PayloadError(
            QuarantineReason.BAD_SIGNATURE, f"signed by {signer}, {source} {address}"
        )
    device = directory.device(topic_id)
    if device is not None and reading.currency != device.currency:
        raise PayloadError(
            QuarantineReason.WRONG_CURRENCY,
            f"currency {reading.currency}, the pool's is {device.currency}",
        )
    behind = message.received_at - reading.ts.timestamp()
    if behind < -window.ahead_seconds or behind > window.backfill_seconds:
        where = f"{-behind:.0f} s ahead of" if behind < 0 else f"{behind:.0f} s behind"
        raise PayloadError(
            QuarantineReason.BAD_TIMESTAMP,
            f"ts {reading.ts.isoformat()} is {where} receipt (allowed: "
            f"{window.ahead_seconds:.0f} s ahead, {window.backfill_seconds:.0f} s behind)",
        )
    return reading, canonical


def _status(untrusted_raw: bytes, topic_id: str, directory: DeviceDirectory) -> bool | None:
    """`online`/`offline` as plain text, a JSON string, or a JSON object with `status` or
    `state` naming one of them or a boolean `online` (and, if present, the same device_id);
    None for an empty payload, which clears the retained status and changes nothing."""
    if not untrusted_raw:
        return None
    if len(untrusted_raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(QuarantineReason.TOO_LARGE, f"{len(untrusted_raw)} bytes")
    try:
        untrusted_text = untrusted_raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError(QuarantineReason.PARSE_ERROR, str(exc)[:300]) from exc
    online = STATUS_WORDS.get(untrusted_text.lower())
    if online is None:
        online = _status_json(untrusted_text, topic_id)
    _registered(topic_id, directory)
    return online


def _status_json(untrusted_text: str, topic_id: str) -> bool:
    try:
        untrusted_value = json.loads(untrusted_text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(QuarantineReason.PARSE_ERROR, f"status: {str(exc)[:200]}") from exc
    if isinstance(untrusted_value, str) and untrusted_value.lower() in STATUS_WORDS:
        return STATUS_WORDS[untrusted_value.lower()]
    if not isinstance(untrusted_value, dict):
        raise PayloadError(QuarantineReason.SCHEMA_ERROR, "status is not online/offline")
    claimed = untrusted_value.get("device_id", topic_id)
    if claimed != topic_id:
        raise PayloadError(
            QuarantineReason.UNKNOWN_DEVICE,
            f"status device_id {str(claimed)[:80]} published on the topic of {topic_id[:80]}",
        )
    if isinstance(untrusted_value.get("online"), bool):
        return untrusted_value["online"]
    word = untrusted_value.get("status", untrusted_value.get("state"))
    if isinstance(word, str) and word.lower() in STATUS_WORDS:
        return STATUS_WORDS[word.lower()]
    raise PayloadError(QuarantineReason.SCHEMA_ERROR, "status is not online/offline")


def _registered(topic_id: str, directory: DeviceDirectory) -> str:
    address = directory.address(topic_id)
    if address is None:
        shown = topic_id[:80] if DEVICE_ID_RE.match(topic_id) else repr(topic_id[:80])
        raise PayloadError(QuarantineReason.UNKNOWN_DEVICE, f"device {shown} is not registered")
    return address
