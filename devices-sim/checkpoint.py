"""Where each device's seq, meters and clock stood at the end of its last run, so the next run
of the same devices continues them (one file for every run under the state dir)."""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gridshare.gateway.identity import DeviceIdentity
from gridshare.sim.device import SimDevice


class Checkpoint:
    """The checkpoint file at `path`; `load()` reads it once for a run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        self.saved = self._read()

    def start_time(
        self, start: datetime | float | None, identities: Sequence[DeviceIdentity]
    ) -> float:
        """The given start; by default now, or where a previous run of these devices ended if
        that is later (so device time never runs backwards across runs)."""
        if isinstance(start, datetime):
            return start.timestamp()
        if start is not None:
            return float(start)
        return max([time.time(), self.last_end(identities)])

    def last_end(self, identities: Sequence[DeviceIdentity]) -> float:
        """The latest simulated time a previous run of any of these devices reached."""
        return max(
            (
                self.saved[i.device_id].get("sim_time", 0.0)
                for i in identities
                if i.device_id in self.saved
            ),
            default=0.0,
        )

    def restore(self, devices: Iterable[SimDevice]) -> None:
        """Continue each saved device's seq and meters."""
        for device in devices:
            saved = self.saved.get(device.identity.device_id)
            if saved:
                device.resume(
                    saved["seq"], saved["energy_wh"], saved["revenue_minor"], saved["sessions"]
                )

    def save(self, devices: Iterable[SimDevice], sim_end: float) -> None:
        """Merge this run's devices into the file (under a lock: runs may overlap)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            saved = self._read()
            for device in devices:
                if device.seq:
                    saved[device.identity.device_id] = device.meters() | {"sim_time": sim_end}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(saved))
            tmp.replace(self.path)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
