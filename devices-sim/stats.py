"""What a fleet run did: counters kept per device and for the fleet as events happen, and
the log of every acknowledged message (`acked.tsv`), which is what the platform must store."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any


@dataclass
class DeviceCounts:
    """Per-device message counts of a run."""

    generated: int = 0
    published: int = 0
    acked: int = 0
    acked_readings: int = 0
    refused: int = 0
    dropped: int = 0


@dataclass
class FleetStats:
    """What a run did. `acked` counts broker PUBACKs with a success code (telemetry only);
    `acked_path` lists each of them as `device_id<TAB>seq<TAB>kind`."""

    run_id: str
    devices: int
    sim_start: str
    sim_end: str = ""
    speed: float = 0.0
    wall_seconds: float = 0.0
    connect_seconds: float = 0.0
    online: int = 0
    connected_peak: int = 0
    generated: int = 0
    published: int = 0
    acked: int = 0
    acked_readings: int = 0
    refused: int = 0
    refused_reasons: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    buffered: int = 0
    dropped: int = 0
    connects: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    lag_seconds: float = 0.0
    lag_max_seconds: float = 0.0
    acked_path: str = ""
    stopped_early: bool = False
    per_device: dict[str, DeviceCounts] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Everything but the per-device table (for logs and JSON)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_device"}
        out["faults"] = dict(self.faults)
        out["refused_reasons"] = dict(self.refused_reasons)
        return out

    def unfinished(self) -> int:
        """Messages generated and neither acknowledged, refused nor dropped yet."""
        return self.generated - self.acked - self.refused - self.dropped

    def generated_by(self, counts: DeviceCounts, n: int) -> None:
        counts.generated += n
        self.generated += n

    def published_by(self, counts: DeviceCounts) -> None:
        counts.published += 1
        self.published += 1

    def acked_by(self, counts: DeviceCounts, reading: bool) -> None:
        counts.acked += 1
        self.acked += 1
        if reading:
            counts.acked_readings += 1
            self.acked_readings += 1

    def refused_by(self, counts: DeviceCounts, reason: int) -> None:
        counts.refused += 1
        self.refused += 1
        key = f"0x{reason:02x}"
        self.refused_reasons[key] = self.refused_reasons.get(key, 0) + 1

    def dropped_by(self, counts: DeviceCounts, n: int) -> None:
        counts.dropped += n
        self.dropped += n

    def observe(self, *, online: int, in_flight: int, buffered: int) -> None:
        """Bring the derived figures up to date (the counters are kept as events happen)."""
        self.in_flight = in_flight
        self.buffered = buffered
        self.online = online
        self.connected_peak = max(self.connected_peak, online)


class AckedLog:
    """`acked.tsv` of a run, appended to as PUBACKs arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def open(self) -> None:
        self._file = open(self.path, "a", buffering=1 << 16)  # noqa: SIM115

    def write(self, device_id: str, seq: int, kind: str) -> None:
        assert self._file is not None
        self._file.write(f"{device_id}\t{seq}\t{kind}\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def read_acked(path: Path, kinds: set[str] | None = None) -> list[tuple[str, int]]:
    """(device_id, seq) pairs of an `acked.tsv`, optionally only of some kinds."""
    out = []
    with open(path) as handle:
        for line in handle:
            device_id, seq, kind = line.rstrip("\n").split("\t")
            if kinds is None or kind in kinds:
                out.append((device_id, int(seq)))
    return out


def iso(t: float) -> str:
    """A simulated time as an ISO 8601 UTC string to the second."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
