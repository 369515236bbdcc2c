"""The device telemetry payload (SPEC §4): its model, canonical signing bytes, and checks.

Input from the broker stays `untrusted_…` until `parse_telemetry` has validated it; the
signature is checked over the canonical form of the object *as received* (keys sorted, no
whitespace, UTF-8), never over a re-serialisation of the validated model, whose number
formatting could differ.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gridshare.core.errors import PayloadError
from gridshare.core.signing import Signer

MAX_PAYLOAD_BYTES = 16 * 1024
MAX_POWER_W = 50_000_000  # 50 MW: above any single PV plant, pile or cabinet
MAX_METER = 2**53 - 1  # exact in JSON numbers and in JavaScript clients
TOPIC_ROOT = "gridshare/v1/devices"
TELEMETRY_TOPIC = TOPIC_ROOT + "/{device_id}/telemetry"
STATUS_TOPIC = TOPIC_ROOT + "/{device_id}/status"
TELEMETRY_FILTER = TELEMETRY_TOPIC.format(device_id="+")  # every device's telemetry
STATUS_FILTER = STATUS_TOPIC.format(device_id="+")
TOPIC_RE = re.compile(rf"^{re.escape(TOPIC_ROOT)}/([^/]*)/(telemetry|status)$")
# RabbitMQ's MQTT plugin swaps '/' and '.' between an MQTT topic and its AMQP routing key
AMQP_SWAP = str.maketrans("./", "/.")


def amqp_routing_key(topic: str) -> str:
    """The AMQP routing key (or binding pattern, for a `+` filter) of an MQTT topic."""
    return topic.translate(AMQP_SWAP).replace("+", "*")


DEVICE_ID_PATTERN = r"^(cp|pv|bs)-[A-Za-z0-9_-]{1,60}$"


class DeviceType(StrEnum):
    CHARGING_PILE = "charging_pile"
    PV_PLANT = "pv_plant"
    BATTERY_SWAP = "battery_swap"

    @property
    def prefix(self) -> str:
        return {"charging_pile": "cp", "pv_plant": "pv", "battery_swap": "bs"}[self.value]

    @property
    def pool_stem(self) -> str:
        """Pools are named after their device type: `charging-pile-1`, `pv-plant-1`, …"""
        return self.value.replace("_", "-")


class QuarantineReason(StrEnum):
    """Why a message was rejected (SPEC §10 metric label and `quarantine.reason`)."""

    PARSE_ERROR = "parse_error"
    SCHEMA_ERROR = "schema_error"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_SIGNATURE = "bad_signature"
    METER_REGRESSION = "meter_regression"
    TOO_LARGE = "too_large"
    CONFLICTING_READING = "conflicting_reading"  # same (device_id, seq), other signed bytes
    BAD_TIMESTAMP = "bad_timestamp"  # device clock too far ahead of receipt, or too old
    IMPLAUSIBLE_READING = "implausible_reading"  # meters rose faster than the device can
    WRONG_CURRENCY = "wrong_currency"  # not the currency of the device's pool


Status = Literal["idle", "charging", "generating", "swapping", "fault", "maintenance"]
Meter = Annotated[int, Field(ge=0, le=MAX_METER, strict=True)]


class Telemetry(BaseModel):
    """One signed reading of a device's meters and state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    type: DeviceType
    seq: Annotated[int, Field(ge=0, le=2**63 - 1, strict=True)]
    ts: datetime
    status: Status
    power_w: Annotated[float, Field(ge=0, le=MAX_POWER_W, allow_inf_nan=False)]
    soc_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    energy_wh_total: Meter
    sessions_total: Meter | None = None
    revenue_minor_total: Meter
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    sig: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
            raise ValueError("ts must be RFC 3339 in UTC (suffix Z)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Telemetry:
        if not self.device_id.startswith(self.type.prefix + "-"):
            raise ValueError(f"device_id {self.device_id} does not match type {self.type}")
        if self.type is DeviceType.PV_PLANT and (
            self.soc_pct is not None or self.sessions_total is not None
        ):
            raise ValueError("pv_plant readings carry no soc_pct or sessions_total")
        return self


def canonical_bytes(untrusted_object: dict[str, Any]) -> bytes:
    """The signed form: the object without `sig`, keys sorted, no whitespace, UTF-8.

    Byte for byte what `json.dumps(…, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` writes. orjson writes the same bytes several times faster for
    strings (every code point), integers within 64 bits, booleans, null, and floats that
    Python writes without an exponent (zero, and 1e-4 <= |x| < 1e16); anything else goes to
    the standard library (tests compare the two)."""
    unsigned = dict(untrusted_object)
    unsigned.pop("sig", None)
    if all(map(_same_in_orjson, unsigned.values())):
        with contextlib.suppress(TypeError):  # an integer beyond 64 bits
            return orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


_SAME_IN_ORJSON = frozenset({str, int, bool, type(None)})  # exact types: subclasses fall back


def _same_in_orjson(value: object) -> bool:
    kind = type(value)
    if kind is float:
        return value == 0 or 1e-4 <= abs(value) < 1e16  # type: ignore[operator]
    return kind in _SAME_IN_ORJSON


def parse_telemetry(untrusted_raw: bytes) -> tuple[Telemetry, bytes]:
    """Validate raw bytes into a Telemetry and its canonical signing bytes, or PayloadError.

    The signature itself is not checked here: that needs the registered device address.
    """
    if len(untrusted_raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            QuarantineReason.TOO_LARGE, f"{len(untrusted_raw)} bytes > {MAX_PAYLOAD_BYTES}"
        )
    untrusted_object = _loads(untrusted_raw)
    if not isinstance(untrusted_object, dict):
        raise PayloadError(QuarantineReason.SCHEMA_ERROR, "payload is not a JSON object")
    try:
        reading = Telemetry.model_validate(untrusted_object)
    except ValidationError as exc:
        raise PayloadError(QuarantineReason.SCHEMA_ERROR, _first_error(exc)) from exc
    return reading, canonical_bytes(untrusted_object)


def encode_reading(fields: dict[str, Any], sign_with: bytes | Signer) -> bytes:
    """A device's side: sign the canonical bytes of `fields` (no `sig`) and return them with
    the signature appended as the last member (any member order is valid; ingest
    re-canonicalises before it checks the signature)."""
    signer = sign_with if isinstance(sign_with, Signer) else Signer(sign_with)
    canonical = canonical_bytes(fields)
    return canonical[:-1] + b',"sig":"' + signer.sign(canonical).encode() + b'"}'


def format_ts(moment: datetime) -> str:
    """RFC 3339 UTC with a Z suffix, millisecond precision at most."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return text.replace(".000Z", "Z")


def _loads(untrusted_raw: bytes) -> Any:
    """JSON text to Python objects, or PayloadError. orjson is the fast path; whatever it
    refuses (integers beyond 64 bits, lone surrogate escapes, and every malformed input) is
    decided by the standard parser, so the outcome is exactly that parser's."""
    try:
        return orjson.loads(untrusted_raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(untrusted_raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(QuarantineReason.PARSE_ERROR, str(exc)[:300]) from exc


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "payload"
    return f"{where}: {error['msg']}"[:300]
