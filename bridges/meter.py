"""A bridged device's meters: from what the hardware reported to SPEC telemetry fields.

Hardware reports lifetime registers that may be replaced, reset or wrap; the platform wants
meters that never decrease. The bridge keeps a `MeterState` per device (persisted only after
the broker acknowledged the reading built from it) and advances it by each `Sample`: energy
by the register's step, revenue by the step times the pool's tariff, sessions by new
transactions. Everything is integer: milliwatt-hours (scale factors below one Wh) and
millionths of a minor unit (tariff per kWh times mWh), floored only when published.

`advance` is deterministic: the same state and sample give the same reading, byte for byte
once signed (RFC 6979 signatures), so a reading rebuilt after a crash is a duplicate that
ingest recognises, never a second reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gridshare.core.payloads import DeviceType, Status, format_ts


@dataclass(frozen=True)
class MeterState:
    """What the bridge has published for a device (one `bridge_state` row)."""

    last_seq: int
    last_ts: datetime
    status: str
    energy_mwh_total: int
    revenue_micro_total: int
    sessions_total: int | None
    last_transaction: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One observation of the hardware at `ts` (its own clock)."""

    ts: datetime
    status: Status
    energy_step_mwh: int  # since the previous sample (0 for the first one)
    energy_start_mwh: int = 0  # the register's absolute value, used for the first sample
    power_w: float | None = None
    soc_pct: float | None = None
    transaction: str | None = None  # a transaction id: counted once as a session
    source: dict[str, Any] = field(default_factory=dict)


def register_step(previous: int | None, current: int, wrap: int | None = None) -> int:
    """How far a register advanced: the difference, across a wrap at `wrap` when given; 0
    for a first value or a register that went backwards (a meter replaced or reset: the new
    value is the new baseline, nothing is counted twice)."""
    if previous is None:
        return 0
    if current >= previous:
        return current - previous
    return current + wrap - previous if wrap else 0


def seq_for(ts: datetime, state: MeterState | None) -> int:
    """The reading's seq: milliseconds of the device clock, kept strictly increasing."""
    millis = int(ts.timestamp() * 1000)
    return millis if state is None else max(millis, state.last_seq + 1)


def advance(
    state: MeterState | None, sample: Sample, tariff_minor_per_kwh: int | None
) -> MeterState | None:
    """The state after `sample`, or None when the sample is not newer than the last reading
    (a retry of what the broker already took, or a repeat)."""
    if state is not None and sample.ts <= state.last_ts:
        return None
    tariff = tariff_minor_per_kwh or 0
    if state is None:
        energy, step, revenue, sessions = sample.energy_start_mwh, 0, 0, 0
        last_transaction = None
    else:
        energy, step = state.energy_mwh_total, sample.energy_step_mwh
        revenue, sessions = state.revenue_micro_total, state.sessions_total
        last_transaction = state.last_transaction
    if sample.transaction is not None and sample.transaction != last_transaction:
        sessions = (sessions or 0) + 1
        last_transaction = sample.transaction
    return MeterState(
        last_seq=seq_for(sample.ts, state),
        last_ts=sample.ts,
        status=sample.status,
        energy_mwh_total=energy + step,
        revenue_micro_total=revenue + step * tariff,
        sessions_total=sessions,
        last_transaction=last_transaction,
        source=sample.source,
    )


def reading_fields(
    device_id: str,
    device_type: DeviceType,
    state: MeterState,
    currency: str,
    power_w: float | None,
    soc_pct: float | None = None,
) -> dict[str, Any]:
    """The unsigned SPEC §4 telemetry object for a state."""
    fields: dict[str, Any] = {
        "v": 1,
        "device_id": device_id,
        "type": device_type.value,
        "seq": state.last_seq,
        "ts": format_ts(state.last_ts),
        "status": state.status,
        "power_w": round(max(0.0, power_w or 0.0), 1),
        "energy_wh_total": state.energy_mwh_total // 1000,
        "revenue_minor_total": state.revenue_micro_total // 1_000_000,
        "currency": currency,
    }
    if device_type is not DeviceType.PV_PLANT:
        fields["sessions_total"] = state.sessions_total or 0
        if soc_pct is not None:
            fields["soc_pct"] = round(min(100.0, max(0.0, soc_pct)), 1)
    return fields
