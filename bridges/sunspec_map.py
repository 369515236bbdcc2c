"""SunSpec register maps, laid out from pysunspec2's model definitions.

A SunSpec device holds the marker "SunS" at 40000 (or 0, or 50000), then models one after
another, each `ID, L` and L registers of points, ended by ID 0xFFFF. Points are decoded by
their SunSpec type; a value that the device does not implement (0x8000, 0xFFFF,
0x80000000, … by type; 0 for accumulators) is None. The same layout encodes a map, which
is what the protocol peer in tests and the demo serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sunspec2.device import get_model_def

SUNS = [0x5375, 0x6E53]  # "SunS"
BASES = (40000, 0, 50000)
END = 0xFFFF
REGISTER_BITS = 16

# Unimplemented value per type (SunSpec Information Model, "Not Implemented").
UNIMPLEMENTED: dict[str, int] = {
    "int16": 0x8000,
    "uint16": 0xFFFF,
    "count": 0,
    "acc16": 0,
    "enum16": 0xFFFF,
    "bitfield16": 0xFFFF,
    "sunssf": 0x8000,
    "int32": 0x80000000,
    "uint32": 0xFFFFFFFF,
    "acc32": 0,
    "enum32": 0xFFFFFFFF,
    "bitfield32": 0xFFFFFFFF,
    "int64": 0x8000000000000000,
    "uint64": 0xFFFFFFFFFFFFFFFF,
    "acc64": 0,
}
SIGNED = {"int16", "sunssf", "int32", "int64"}


@dataclass(frozen=True)
class PointDef:
    """A model point: where it is (registers after the model's ID) and how to read it."""

    name: str
    type: str
    size: int
    offset: int
    sf: str | None


@lru_cache(maxsize=32)
def model_points(model_id: int) -> dict[str, PointDef]:
    """The fixed (non-repeating) points of a model, from its pysunspec2 definition."""
    points, offset = {}, 0
    for point in get_model_def(model_id)["group"]["points"]:
        size = int(point.get("size", 1))
        points[point["name"]] = PointDef(
            point["name"], point["type"], size, offset, point.get("sf")
        )
        offset += size
    return points


def model_length(model_id: int) -> int:
    """L: the registers after ID and L."""
    return sum(p.size for p in model_points(model_id).values()) - 2


def decode(point: PointDef, registers: list[int]) -> int | str | None:
    """A point's raw value from the model's registers (index 0 = ID), None if absent."""
    words = registers[point.offset : point.offset + point.size]
    if point.type == "string":
        text = b"".join(w.to_bytes(2, "big") for w in words).rstrip(b"\x00")
        return text.decode("utf-8", "replace") or None
    if point.type == "pad":
        return None
    value = 0
    for word in words:
        value = (value << REGISTER_BITS) | word
    if UNIMPLEMENTED.get(point.type) == value:
        return None
    bits = REGISTER_BITS * point.size
    if point.type in SIGNED and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def encode(point: PointDef, value: int | str | None) -> list[int]:
    """A point's registers; None writes the type's unimplemented value."""
    if point.type == "string":
        raw = str(value or "").encode()[: 2 * point.size].ljust(2 * point.size, b"\x00")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if value is None:
        value = UNIMPLEMENTED.get(point.type, 0)
    assert isinstance(value, int)
    bits = REGISTER_BITS * point.size
    value &= (1 << bits) - 1
    return [(value >> (REGISTER_BITS * (point.size - 1 - i))) & 0xFFFF for i in range(point.size)]


def scaled(raw: int | None, sf: int | None) -> float | None:
    """A point's value in its unit: raw x 10^sf; None when either is absent."""
    if raw is None or sf is None:
        return None
    return raw * 10.0**sf


def build_map(models: list[tuple[int, dict[str, Any]]]) -> list[int]:
    """The registers of a whole device from the marker on: each model with its values
    (absent points unimplemented), then the end model."""
    registers = list(SUNS)
    for model_id, values in models:
        points = model_points(model_id)
        block = [0] * (model_length(model_id) + 2)
        for name, point in points.items():
            if name == "ID":
                value: Any = model_id
            elif name == "L":
                value = model_length(model_id)
            else:
                value = values.get(name)
            block[point.offset : point.offset + point.size] = encode(point, value)
        registers += block
    return [*registers, END, 0]


def model_offsets(registers: list[int]) -> dict[int, int]:
    """Model id -> index of its ID register, walking a map that starts with the marker."""
    offsets, index = {}, 2
    while index + 1 < len(registers) and registers[index] != END:
        offsets[registers[index]] = index
        index += 2 + registers[index + 1]
    return offsets
