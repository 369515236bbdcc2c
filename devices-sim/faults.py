"""Faults the simulator injects on request (`--faults disconnect,duplicate:0.05,…`).

Each fault has a probability per reading. What each does on the wire:

- `disconnect`: the device drops its TCP connection without DISCONNECT (the broker publishes
  its will, `offline`), stays away 2-12 reading intervals, buffers its readings, and replays
  them (in seq order) after reconnecting.
- `duplicate`: the reading is published twice (same bytes, two PUBLISH packets).
- `reorder`: the reading is held back and published after the next one.
- `skew`: the device clock jumps by ±1 min..1 h for the next 1-12 readings (`ts` only).
- `garbage`: an extra message on the telemetry topic, one of `GARBAGE_VARIANTS`.
- `badsig`: the reading is signed with a key that is not the device's (or a corrupted
  signature) instead of its own; its seq is used up.
- `reset`: the reading reports zeroed meters (a meter glitch) once an earlier reading showed a
  meter above zero, so it always goes backwards; its seq is used up, the true meters continue
  with the next reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gridshare.core.errors import ConfigError

FAULTS = ("disconnect", "duplicate", "reorder", "skew", "garbage", "badsig", "reset")
GARBAGE_VARIANTS = ("not_json", "invalid_utf8", "blob_oversize", "nan", "wrong_types")
DEFAULT_RATE = 0.01


@dataclass(frozen=True)
class FaultPlan:
    """Probability per reading of each enabled fault."""

    rates: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None, default_rate: float = DEFAULT_RATE) -> FaultPlan:
        """`disconnect,duplicate:0.05` (a name alone takes `default_rate`; `all` = every fault)."""
        rates: dict[str, float] = {}
        for item in (text or "").split(","):
            name, _, rate_text = item.strip().partition(":")
            if not name:
                continue
            try:
                rate = float(rate_text) if rate_text else default_rate
            except ValueError as exc:
                raise ConfigError("--faults", f"rate {rate_text!r} is not a number") from exc
            if not 0.0 <= rate <= 1.0:
                raise ConfigError("--faults", f"rate {rate} of {name} is outside 0..1")
            names = FAULTS if name == "all" else (name,)
            for one in names:
                if one not in FAULTS:
                    raise ConfigError(
                        "--faults", f"unknown fault {one!r}; choose from {', '.join(FAULTS)}"
                    )
                rates[one] = rate
        return cls(rates)

    def rate(self, name: str) -> float:
        return self.rates.get(name, 0.0)

    def __bool__(self) -> bool:
        return any(rate > 0 for rate in self.rates.values())
