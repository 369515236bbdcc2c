"""The per-device leaf of an epoch: its ABI-typed fields and its double hash.

    leaf = keccak256(bytes.concat(keccak256(abi.encode(
        bytes32 poolId, uint64 epoch, bytes32 deviceId, uint256 energyWh, uint256 revenueMinor,
        uint64 sessions, uint32 readings, uint64 firstSeq, uint64 lastSeq, uint32 uptimeSeconds,
        uint32 meterResets, int256 adjustmentEnergyWh, int256 adjustmentRevenueMinor,
        uint256 endEnergyWh, uint256 endRevenueMinor, uint64 endSessions, uint8 excluded))))

This is what OpenZeppelin's `StandardMerkleTree.of(values, LEAF_TYPES)` hashes, and what the
registry's `verifyLeaf` expects. The field list is part of the public interface: keep it stable
(docs/oracle.md). Every field is a static ABI type, so the encoding is seventeen 32-byte words;
`signing_bytes` builds them directly (the same bytes `eth_abi.encode` gives, much faster).

The end values are the meter values the epoch used at its end: the next epoch starts from them,
so a signer (or an auditor) takes a device's start values from a leaf it has checked against
the on-chain root, never from a table. `excluded` is 0, or the code (EXCLUSIONS) of the check
the device's readings failed: its figures are zero and its end values are its start values,
so its revenue carries into the first epoch it passes again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sha3 import keccak_256

from gridshare.core.ids import text_id


def keccak(data: bytes) -> bytes:
    return keccak_256(data).digest()


LEAF_TYPES: tuple[str, ...] = (
    "bytes32",  # poolId = keccak256(pool name)
    "uint64",  # epoch
    "bytes32",  # deviceId = keccak256(device id)
    "uint256",  # energyWh
    "uint256",  # revenueMinor
    "uint64",  # sessions
    "uint32",  # readings
    "uint64",  # firstSeq
    "uint64",  # lastSeq
    "uint32",  # uptimeSeconds
    "uint32",  # meterResets
    "int256",  # adjustmentEnergyWh
    "int256",  # adjustmentRevenueMinor
    "uint256",  # endEnergyWh
    "uint256",  # endRevenueMinor
    "uint64",  # endSessions
    "uint8",  # excluded (0, or an index into EXCLUSIONS)
)
LEAF_NAMES: tuple[str, ...] = (
    "poolId",
    "epoch",
    "deviceId",
    "energyWh",
    "revenueMinor",
    "sessions",
    "readings",
    "firstSeq",
    "lastSeq",
    "uptimeSeconds",
    "meterResets",
    "adjustmentEnergyWh",
    "adjustmentRevenueMinor",
    "endEnergyWh",
    "endRevenueMinor",
    "endSessions",
    "excluded",
)
# why a device's readings were not counted, by the code its leaf carries
EXCLUSIONS: tuple[str, ...] = (
    "",
    "bad_signature",  # a determining reading's signature is not the device's on-chain key
    "reading_mismatch",  # a stored reading differs from the bytes the device signed
    "unsigned_reading",  # a determining reading has no signed bytes kept
    "no_onchain_key",  # the device is not registered on-chain
    "flagged",  # the device signed conflicting readings and is not cleared yet
    "implausible",  # the figure exceeds what the device's rated power can deliver
)

# 17 words in LEAF_TYPES order: uint64 and uint256 below 2^64 as 24 zero bytes + Q, uint32 as
# 28 zero bytes + I, int256 within int64 as 24 sign bytes + q, uint8 as 31 zero bytes + B
_FAST = struct.Struct(">32s24xQ32s24xQ24xQ24xQ28xI24xQ24xQ28xI28xI24sq24sq24xQ24xQ24xQ31xB")
_SIGN = (b"\x00" * 24, b"\xff" * 24)


@dataclass(frozen=True)
class _EpochOf:
    """Which pool and epoch a leaf belongs to: its first fields, as in LEAF_TYPES."""

    pool: str
    epoch: int


@dataclass(frozen=True)
class DeviceCounts:
    """What a device did in one period (base units: Wh, minor currency units, seconds): the
    figures the meters derive (`meters.DeviceFigures`) and a leaf commits to."""

    device_id: str
    energy_wh: int
    revenue_minor: int
    sessions: int
    readings: int
    first_seq: int
    last_seq: int
    uptime_seconds: int
    meter_resets: int
    adjustment_energy_wh: int
    adjustment_revenue_minor: int


@dataclass(frozen=True)
class DeviceLeaf(DeviceCounts, _EpochOf):
    """One device's figures for one epoch: fields in LEAF_TYPES order (pool, epoch, then
    the counts, then the end values)."""

    end_energy_wh: int
    end_revenue_minor: int
    end_sessions: int
    excluded: int = 0

    @property
    def exclusion(self) -> str:
        """The reason name ('' when the device counts)."""
        return EXCLUSIONS[self.excluded] if self.excluded < len(EXCLUSIONS) else "unknown"

    @property
    def carries(self) -> bool:
        """Whether the next epoch starts from this leaf's end values. An excluded device that
        never had a start value (excluded in its first epoch) has all-zero end values: it
        starts from its first reading again, as a device without a leaf does."""
        return not (
            self.excluded
            and not (self.end_energy_wh or self.end_revenue_minor or self.end_sessions)
        )

    def values(self) -> tuple[object, ...]:
        """The ABI values in LEAF_TYPES order."""
        return (
            text_id(self.pool),
            self.epoch,
            text_id(self.device_id),
            self.energy_wh,
            self.revenue_minor,
            self.sessions,
            self.readings,
            self.first_seq,
            self.last_seq,
            self.uptime_seconds,
            self.meter_resets,
            self.adjustment_energy_wh,
            self.adjustment_revenue_minor,
            self.end_energy_wh,
            self.end_revenue_minor,
            self.end_sessions,
            self.excluded,
        )

    @classmethod
    def from_signing_bytes(cls, pool: str, device_id: str, data: bytes) -> DeviceLeaf:
        """The leaf back from its ABI encoding (checked to name this pool and device)."""
        if len(data) != 32 * len(LEAF_TYPES):
            raise ValueError(f"a leaf encoding has {32 * len(LEAF_TYPES)} bytes, not {len(data)}")
        words = [data[i : i + 32] for i in range(0, len(data), 32)]
        if words[0] != text_id(pool) or words[2] != text_id(device_id):
            raise ValueError(f"the leaf encoding is not {pool}/{device_id}'s")
        ints = [
            int.from_bytes(w, "big", signed=t.startswith("int"))
            for w, t in zip(words, LEAF_TYPES, strict=True)
        ]
        leaf = cls(pool, ints[1], device_id, *ints[3:])
        if leaf.signing_bytes() != data:
            raise ValueError("the leaf encoding is not canonical")
        return leaf

    def signing_bytes(self) -> bytes:
        """abi.encode of the fields: one struct.pack when every value fits its packed width
        (as in practice; struct range-checks each), the general path otherwise."""
        values = self.values()
        adjust_e, adjust_r = self.adjustment_energy_wh, self.adjustment_revenue_minor
        try:  # the two int256 words (values 11 and 12) each packed as sign bytes + int64
            return _FAST.pack(
                *values[:11],
                _SIGN[adjust_e < 0],
                adjust_e,
                _SIGN[adjust_r < 0],
                adjust_r,
                *values[13:],
            )
        except struct.error:
            return b"".join(map(_encode, values, LEAF_TYPES))

    def leaf_hash(self) -> bytes:
        return keccak(keccak(self.signing_bytes()))

    def as_json(self) -> dict[str, object]:
        """The named fields for API clients (amounts as strings: they can exceed 2^53)."""
        out: dict[str, object] = {}
        for name, value in zip(LEAF_NAMES, self.values(), strict=True):
            if isinstance(value, bytes):
                out[name] = "0x" + value.hex()
            elif name in ("energyWh", "revenueMinor", "endEnergyWh", "endRevenueMinor") or (
                name.startswith("adjustment")
            ):
                out[name] = str(value)
            else:
                out[name] = value
        return out


def _encode(value: object, abi_type: str) -> bytes:
    """One ABI word: bytes32 as is, intN and uintN range-checked."""
    if isinstance(value, bytes):
        return value
    assert isinstance(value, int)
    if abi_type.startswith("int"):
        return value.to_bytes(32, "big", signed=True)
    bits = int(abi_type.removeprefix("uint"))
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit uint{bits}")
    return value.to_bytes(32, "big")
