"""What OCPP 1.6J and 2.0.1 share in the bridge: a charger's session state, the meter
value parsing (units, multipliers, signed values) and the mapping to SPEC statuses.

A charger is one `cp-…` device. Its energy is the sum of its connectors' (1.6) or EVSEs'
(2.0.1) `Energy.Active.Import.Register` steps; connector/EVSE 0 (the main meter) counts only
for chargers that report no per-connector register. Each new transaction counts one
session. Every handler that carries meter values answers only after `BridgedMeter.record`
returned, i.e. after the broker's PUBACK.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gridshare.bridges.device import BridgedMeter
from gridshare.bridges.meter import Sample, register_step
from gridshare.bridges.store import Evidence
from gridshare.core.payloads import Status, format_ts

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
SOC = "SoC"
HEARTBEAT_SECONDS = 300
log = logging.getLogger(__name__)

# Connector states (1.6 ChargePointStatus, 2.0.1 ConnectorStatus / ChargingState) -> SPEC.
STATUS_MAP: dict[str, Status] = {
    "Available": "idle",
    "Preparing": "idle",
    "Finishing": "idle",
    "Reserved": "idle",
    "Idle": "idle",
    "EVConnected": "charging",
    "Charging": "charging",
    "SuspendedEV": "charging",
    "SuspendedEVSE": "charging",
    "Occupied": "charging",
    "Unavailable": "maintenance",
    "Faulted": "fault",
}
PRIORITY: tuple[Status, ...] = ("fault", "charging", "maintenance", "idle")


@dataclass
class MeterReading:
    """What one OCPP MeterValue (a timestamp and its sampled values) said."""

    ts: datetime
    energy_mwh: int | None = None
    power_w: float | None = None
    soc_pct: float | None = None
    evidence: list[Evidence] = field(default_factory=list)


def now_ts() -> str:
    """The central system's clock in OCPP's RFC 3339 form (BootNotification, Heartbeat)."""
    return format_ts(datetime.now(UTC))


def parse_ts(untrusted_ts: str | None) -> datetime:
    """An OCPP timestamp as aware UTC; the bridge's clock when the charger gave none."""
    if not untrusted_ts:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(untrusted_ts.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_milli(value: float, unit: str | None, base: str, multiplier: int = 0) -> float:
    """A value in `base` (Wh or W) x 1000, from Wh/kWh or W/kW and a 10^multiplier."""
    scale = 1000.0 if unit == "k" + base else 1.0
    return value * scale * 10**multiplier * 1000


def parse_meter_value(untrusted: dict[str, Any], version: str) -> MeterReading:
    """A meter value (snake_case keys, as the ocpp library hands them over)."""
    reading = MeterReading(ts=parse_ts(untrusted.get("timestamp")))
    for sampled in untrusted.get("sampled_value", []):
        measurand = sampled.get("measurand", ENERGY)
        if sampled.get("phase"):
            continue  # per-phase values; the totals are what the platform meters
        if version == "1.6":
            unit, multiplier = sampled.get("unit"), 0
            if sampled.get("format") == "SignedData":
                reading.evidence.append(_evidence_16(reading.ts, measurand, sampled["value"]))
                continue
            value = float(sampled["value"])
        else:
            unit_of_measure = sampled.get("unit_of_measure") or {}
            unit, multiplier = (
                unit_of_measure.get("unit"),
                int(unit_of_measure.get("multiplier", 0)),
            )
            value = float(sampled["value"])
            if sampled.get("signed_meter_value"):
                reading.evidence.append(
                    _evidence_201(reading.ts, measurand, sampled["signed_meter_value"])
                )
        if measurand == ENERGY:
            reading.energy_mwh = round(to_milli(value, unit, "Wh", multiplier))
        elif measurand == POWER:
            reading.power_w = to_milli(value, unit, "W", multiplier) / 1000
        elif measurand == SOC:
            reading.soc_pct = value
    return reading


def _evidence_16(ts: datetime, measurand: str, signed: str) -> Evidence:
    kind = "OCMF" if signed.startswith("OCMF|") else "SignedData"
    return Evidence(ts=ts, format=kind, signed_data=signed, measurand=measurand)


def _evidence_201(ts: datetime, measurand: str, signed: dict[str, Any]) -> Evidence:
    data = signed.get("signed_meter_data", "")
    kind = "OCMF" if data.startswith("OCMF|") else signed.get("signing_method") or "signed"
    return Evidence(
        ts=ts,
        format=kind,
        signed_data=data,
        measurand=measurand,
        signing_method=signed.get("signing_method"),
        encoding_method=signed.get("encoding_method"),
        public_key=signed.get("public_key"),
    )


class ChargerSession:
    """One connected charger: its device and what its connectors last said."""

    def __init__(self, charger_id: str, meter: BridgedMeter) -> None:
        self.charger_id = charger_id
        self.meter = meter
        self.statuses: dict[str, Status] = {}

    @property
    def status(self) -> Status:
        present = set(self.statuses.values())
        if not present:
            return self.meter.state.status if self.meter.state else "idle"  # type: ignore[return-value]
        return next(s for s in PRIORITY if s in present)

    def set_status(self, connector: int | str, untrusted_status: str) -> Status:
        status = STATUS_MAP.get(untrusted_status, "idle")
        if str(connector) == "0" and status in ("fault", "maintenance"):
            self.statuses = {"0": status}  # the whole charger
        else:
            self.statuses.pop("0", None)
            self.statuses[str(connector)] = status
        return self.status

    async def report_status(
        self, connector: int | str, untrusted_status: str, untrusted_ts: str | None
    ) -> None:
        """A StatusNotification: a reading only when the charger's status changes."""
        before = self.status
        if self.set_status(connector, untrusted_status) != before:
            await self.record(parse_ts(untrusted_ts), None)

    def transactions(self) -> dict[str, str]:
        """Open transaction id -> connector/EVSE, as persisted with the meter state."""
        state = self.meter.state
        return dict(state.source.get("transactions", {})) if state else {}

    async def record(
        self,
        ts: datetime,
        connector: int | str | None,
        energy_mwh: int | None = None,
        power_w: float | None = None,
        soc_pct: float | None = None,
        evidence: list[Evidence] | None = None,
        transaction: str | None = None,
        transactions: dict[str, str] | None = None,
    ) -> bool:
        """Publish one reading (see `BridgedMeter.record`); False when already taken."""
        state = self.meter.state
        source = dict(state.source) if state else {}
        registers: dict[str, int] = dict(source.get("registers", {}))
        step = 0
        if energy_mwh is not None and connector is not None:
            key = str(connector)
            if key != "0" or not any(k != "0" for k in registers):
                step = register_step(registers.get(key), energy_mwh)
            registers[key] = energy_mwh
        source["registers"] = registers
        source["transactions"] = (
            transactions if transactions is not None else source.get("transactions", {})
        )
        sample = Sample(
            ts=ts,
            status=self.status,
            energy_step_mwh=step,
            power_w=power_w if power_w is not None else (None if step else 0.0),
            soc_pct=soc_pct,
            transaction=transaction,
            source=source,
        )
        return await self.meter.record(sample, evidence or [])

    async def record_meter_values(
        self, connector: int | str, untrusted_values: list[dict[str, Any]], version: str
    ) -> None:
        """Each timestamped meter value in order: one reading each, evidence attached."""
        for untrusted in untrusted_values:
            reading = parse_meter_value(untrusted, version)
            taken = await self.record(
                reading.ts,
                connector,
                reading.energy_mwh,
                reading.power_w,
                reading.soc_pct,
                reading.evidence,
            )
            if not taken:
                log.info(
                    "meter value already taken",
                    extra={"fields": {"charger_id": self.charger_id, "ts": str(reading.ts)}},
                )


class SessionHandlers:
    """Mixin before the library's `ChargePoint` in both versions' handler classes: the
    connection belongs to the charger of `session`."""

    def __init__(self, session: ChargerSession, connection: Any) -> None:
        super().__init__(session.charger_id, connection)  # type: ignore[call-arg]
        self.session = session
