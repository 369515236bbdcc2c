"""OCPP 2.0.1: the CSMS side of one charger (handlers of the `ocpp` library).

TransactionEvent carries the transaction id chosen by the charger; `Started` (or the first
event of an unknown transaction, when a `Started` was lost) counts a session. Meter values a
charger queued while offline (`offline: true`) keep their own timestamps.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.datatypes import IdTokenInfoType
from ocpp.v201.enums import Action, AuthorizationStatusEnumType, RegistrationStatusEnumType

from gridshare.bridges.ocpp_common import (
    HEARTBEAT_SECONDS,
    ChargerSession,
    SessionHandlers,
    now_ts,
    parse_meter_value,
    parse_ts,
)
from gridshare.bridges.ocpp_frames import FrameErrors

ACCEPTED = IdTokenInfoType(status=AuthorizationStatusEnumType.accepted)


class Csms201(SessionHandlers, FrameErrors, ChargePoint):
    """Handlers for one OCPP 2.0.1 connection."""

    session: ChargerSession

    @on(Action.boot_notification, skip_schema_validation=True)
    async def on_boot(self, **untrusted: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=now_ts(),
            interval=HEARTBEAT_SECONDS,
            status=RegistrationStatusEnumType.accepted,
        )

    @on(Action.heartbeat, skip_schema_validation=True)
    async def on_heartbeat(self, **untrusted: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now_ts())

    @on(Action.authorize, skip_schema_validation=True)
    async def on_authorize(self, **untrusted: Any) -> call_result.Authorize:
        return call_result.Authorize(id_token_info=ACCEPTED)

    @on(Action.status_notification, skip_schema_validation=True)
    async def on_status(
        self, timestamp: str, connector_status: str, evse_id: int, **untrusted: Any
    ) -> call_result.StatusNotification:
        await self.session.report_status(evse_id, connector_status, timestamp)
        return call_result.StatusNotification()

    @on(Action.meter_values, skip_schema_validation=True)
    async def on_meter_values(
        self, evse_id: int, meter_value: list[dict[str, Any]], **untrusted: Any
    ) -> call_result.MeterValues:
        await self.session.record_meter_values(evse_id, meter_value, "2.0.1")
        return call_result.MeterValues()

    @on(Action.transaction_event, skip_schema_validation=True)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        transaction_info: dict[str, Any],
        meter_value: list[dict[str, Any]] | None = None,
        evse: dict[str, Any] | None = None,
        **untrusted: Any,
    ) -> call_result.TransactionEvent:
        transaction_id = str(transaction_info["transaction_id"])
        transactions = self.session.transactions()
        evse_id = str(evse["id"]) if evse else transactions.get(transaction_id, "1")
        new = transaction_id not in transactions and event_type != "Ended"
        charging_state = transaction_info.get("charging_state")
        if event_type == "Ended":
            transactions.pop(transaction_id, None)
            self.session.set_status(evse_id, "Finishing")
        else:
            transactions[transaction_id] = evse_id
            self.session.set_status(evse_id, charging_state or "Charging")
        values = meter_value or []
        if values[:-1]:
            await self.session.record_meter_values(evse_id, values[:-1], "2.0.1")
        last = parse_meter_value(values[-1], "2.0.1") if values else None
        await self.session.record(
            parse_ts(timestamp),
            evse_id,
            last.energy_mwh if last else None,
            last.power_w if last else None,
            last.soc_pct if last else None,
            last.evidence if last else None,
            transaction=transaction_id if new else None,
            transactions=transactions,
        )
        return call_result.TransactionEvent()
