"""One simulated device: its schedule, profile, sequence numbers and the messages it emits.

Everything here is a pure function of the seed, the identity and simulated time; the network
(fleet.py) only decides when bytes leave, never what they are. Two random streams per device,
one for the physics and schedule, one for faults, so enabling faults leaves the readings as
they were.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gridshare.core.payloads import (
    MAX_PAYLOAD_BYTES,
    STATUS_TOPIC,
    TELEMETRY_TOPIC,
    encode_reading,
    format_ts,
)
from gridshare.core.signing import Signer, sign
from gridshare.gateway.identity import DeviceIdentity
from gridshare.sim.faults import FAULTS, GARBAGE_VARIANTS, FaultPlan
from gridshare.sim.profiles import Profile, make_profile

ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(slots=True)
class Outgoing:
    """One message a device wants delivered. `kind`: reading, duplicate, badsig, reset,
    garbage:<variant>, or status."""

    topic: str
    payload: bytes
    seq: int
    kind: str
    retain: bool = False
    attempts: int = 0  # times published (again after each lost connection)


class SimDevice:
    """A device's state between readings."""

    def __init__(
        self,
        identity: DeviceIdentity,
        seed: int,
        start: float,
        interval: float,
        faults: FaultPlan,
        jitter: float = 0.1,
        fault_totals: dict[str, int] | None = None,
    ) -> None:
        self.identity = identity
        self.key = identity.key_bytes
        self.signer = Signer(self.key)
        self.topic = TELEMETRY_TOPIC.format(device_id=identity.device_id)
        self.status_topic = STATUS_TOPIC.format(device_id=identity.device_id)
        self.rng = random.Random(f"{seed}:{identity.device_id}:profile")
        self.fault_rng = random.Random(f"{seed}:{identity.device_id}:faults")
        self.profile: Profile = make_profile(identity.type, self.rng, start)
        self.interval = interval
        self.jitter = jitter
        self.faults = faults
        self.seq = 0
        self.reported_meters = False  # a valid reading with a meter above zero went out
        self.next_due = start + self.rng.uniform(0.0, interval)
        self.clock_offset = 0.0
        self.skewed_readings = 0
        self.held: list[Outgoing] = []
        self.fault_counts: dict[str, int] = {}
        self.fault_totals = fault_totals if fault_totals is not None else {}
        self.p = {name: faults.rate(name) for name in FAULTS}

    def resume(self, seq: int, energy_wh: int, revenue_minor: int, sessions: int) -> None:
        """Continue a previous run's sequence numbers and meters."""
        self.seq = seq
        self.profile.resume(energy_wh, revenue_minor, sessions)
        self.reported_meters = energy_wh > 0 or revenue_minor > 0 or sessions > 0

    def reading(self) -> tuple[list[Outgoing], float]:
        """The messages of the reading due now, and (for a disconnect fault) how many
        simulated seconds the device should then stay offline (0: none). Advances the
        schedule."""
        t = self.next_due
        self.next_due = t + self.interval * self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        self.profile.advance(t)
        self.seq += 1
        rng, p = self.fault_rng, self.p
        if p["skew"] and rng.random() < p["skew"]:
            self._count("skew")
            self.clock_offset = rng.choice((-1, 1)) * rng.uniform(60.0, 3600.0)
            self.skewed_readings = rng.randint(1, 12)
        fields = self.fields(t + self._clock())
        out: list[Outgoing] = []
        if p["garbage"] and rng.random() < p["garbage"]:
            variant = rng.choice(GARBAGE_VARIANTS)
            self._count("garbage")
            out.append(Outgoing(self.topic, garbage(variant, fields, self.key, rng), self.seq,
                                f"garbage:{variant}"))  # fmt: skip
        if p["badsig"] and rng.random() < p["badsig"]:
            self._count("badsig")
            out.append(Outgoing(self.topic, bad_signature(fields, rng), self.seq, "badsig"))
        elif p["reset"] and rng.random() < p["reset"] and self.reported_meters:
            self._count("reset")
            zeroed = fields | {k: 0 for k in METERS if k in fields}
            out.append(Outgoing(self.topic, encode_reading(zeroed, self.signer), self.seq, "reset"))
        else:
            payload = encode_reading(fields, self.signer)
            out.append(Outgoing(self.topic, payload, self.seq, "reading"))
            self.reported_meters = self.reported_meters or any(fields.get(k) for k in METERS)
            if p["duplicate"] and rng.random() < p["duplicate"]:
                self._count("duplicate")
                out.append(Outgoing(self.topic, payload, self.seq, "duplicate"))
        if p["reorder"] and rng.random() < p["reorder"] and not self.held:
            self._count("reorder")
            self.held, out = out, []
        elif self.held:
            out, self.held = out + self.held, []
        offline = 0.0
        if p["disconnect"] and rng.random() < p["disconnect"]:
            self._count("disconnect")
            offline = self.interval * rng.uniform(2.0, 12.0)
        return out, offline

    def fields(self, device_time: float) -> dict[str, Any]:
        """The reading's unsigned fields at the profile's current state."""
        identity = self.identity
        return {
            "v": 1,
            "device_id": identity.device_id,
            "type": identity.type.value,
            "seq": self.seq,
            "ts": format_ts(datetime.fromtimestamp(round(device_time, 3), UTC)),
        } | self.profile.fields()

    def flush_held(self) -> list[Outgoing]:
        """A reading held back by `reorder` when the run ends."""
        held, self.held = self.held, []
        return held

    def meters(self) -> dict[str, int]:
        """The last reported meters, for resuming in a later run."""
        profile = self.profile
        return {
            "seq": self.seq,
            "energy_wh": int(profile.energy_wh),
            "revenue_minor": int(profile.revenue_minor),
            "sessions": profile.sessions,
        }

    def _clock(self) -> float:
        if self.skewed_readings <= 0:
            return 0.0
        self.skewed_readings -= 1
        return self.clock_offset

    def _count(self, fault: str) -> None:
        self.fault_counts[fault] = self.fault_counts.get(fault, 0) + 1
        self.fault_totals[fault] = self.fault_totals.get(fault, 0) + 1


METERS = ("energy_wh_total", "sessions_total", "revenue_minor_total")


def garbage(variant: str, fields: dict[str, Any], key: bytes, rng: random.Random) -> bytes:
    """Bytes that must land in quarantine: parse_error, too_large or schema_error."""
    if variant == "not_json":
        return b"temperature=" + str(rng.randint(-40, 90)).encode() + b";{broken"
    if variant == "invalid_utf8":
        return json.dumps(fields).encode()[:-1] + b',"note":"\xff\xfe\xc3\x28"}'
    if variant == "blob_oversize":  # over the payload limit, under the broker's packet cap
        return rng.randbytes(MAX_PAYLOAD_BYTES + 512)
    if variant == "nan":
        untrusted = fields | {"power_w": math.nan}
        unsigned = json.dumps(untrusted, sort_keys=True, separators=(",", ":")).encode()
        return unsigned[:-1] + b',"sig":"' + sign(key, unsigned).encode() + b'"}'
    if variant == "wrong_types":
        wrong = fields | {"seq": str(fields["seq"]), "power_w": "lots", "energy_wh_total": -5}
        return encode_reading(wrong, key)
    raise ValueError(f"unknown garbage variant {variant}")


def bad_signature(fields: dict[str, Any], rng: random.Random) -> bytes:
    """The reading signed by a stranger's key, or with its signature corrupted."""
    stranger = rng.randbytes(32)
    payload = json.loads(encode_reading(fields, stranger))
    if rng.random() < 0.5:
        sig = bytearray(bytes.fromhex(payload["sig"][2:]))
        sig[rng.randrange(64)] ^= 0xFF
        payload["sig"] = "0x" + sig.hex()
    return json.dumps(payload, separators=(",", ":")).encode()


def status_message(device: SimDevice, online: bool) -> Outgoing:
    return Outgoing(device.status_topic, ONLINE if online else OFFLINE, 0, "status", retain=True)


def generate(
    devices: list[SimDevice], until: float
) -> Iterator[tuple[SimDevice, list[Outgoing], float]]:
    """Every reading the devices emit up to simulated time `until`, in time order: (device,
    its messages, offline seconds of a disconnect fault). No network: for tests, dry runs."""
    heap = [(d.next_due, i) for i, d in enumerate(devices)]
    heapq.heapify(heap)
    while heap and heap[0][0] <= until:
        _, index = heapq.heappop(heap)
        device = devices[index]
        messages, offline = device.reading()
        yield device, messages, offline
        heapq.heappush(heap, (device.next_due, index))
