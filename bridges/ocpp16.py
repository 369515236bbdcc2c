"""OCPP 1.6J: the central system's side of one charger (handlers of the `ocpp` library).

StartTransaction's transactionId is the charger's session number (its `sessions_total`
after the start), derived from the persisted state, so a StartTransaction retried after a
crash gets the same id back.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

from gridshare.bridges.ocpp_common import (
    HEARTBEAT_SECONDS,
    ChargerSession,
    SessionHandlers,
    now_ts,
    parse_ts,
)
from gridshare.bridges.ocpp_frames import FrameErrors

ACCEPTED = IdTagInfo(status=AuthorizationStatus.accepted)


class CentralSystem16(SessionHandlers, FrameErrors, ChargePoint):
    """Handlers for one OCPP 1.6J connection."""

    session: ChargerSession

    @on(Action.boot_notification, skip_schema_validation=True)
    async def on_boot(self, **untrusted: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=now_ts(), interval=HEARTBEAT_SECONDS, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat, skip_schema_validation=True)
    async def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now_ts())

    @on(Action.authorize, skip_schema_validation=True)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=ACCEPTED)

    @on(Action.status_notification, skip_schema_validation=True)
    async def on_status(
        self, connector_id: int, status: str, timestamp: str | None = None, **untrusted: Any
    ) -> call_result.StatusNotification:
        await self.session.report_status(connector_id, status, timestamp)
        return call_result.StatusNotification()

    @on(Action.start_transaction, skip_schema_validation=True)
    async def on_start(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **untrusted: Any
    ) -> call_result.StartTransaction:
        key = f"{connector_id}@{timestamp}"
        known = self.session.transactions()
        state = self.session.meter.state
        number = (state.sessions_total or 0) + 1 if state else 1
        if state is not None and state.last_transaction == key:
            number = state.sessions_total or number  # a retry of the start already taken
        known[str(number)] = str(connector_id)
        self.session.set_status(connector_id, "Charging")
        await self.session.record(
            parse_ts(timestamp),
            connector_id,
            meter_start * 1000,
            transaction=key,
            transactions=known,
        )
        return call_result.StartTransaction(transaction_id=number, id_tag_info=ACCEPTED)

    @on(Action.stop_transaction, skip_schema_validation=True)
    async def on_stop(
        self,
        meter_stop: int,
        timestamp: str,
        transaction_id: int,
        transaction_data: list[dict[str, Any]] | None = None,
        **untrusted: Any,
    ) -> call_result.StopTransaction:
        open_transactions = self.session.transactions()
        connector = open_transactions.pop(str(transaction_id), "1")
        if transaction_data:
            await self.session.record_meter_values(connector, transaction_data, "1.6")
        self.session.set_status(connector, "Finishing")
        await self.session.record(
            parse_ts(timestamp), connector, meter_stop * 1000, transactions=open_transactions
        )
        return call_result.StopTransaction(id_tag_info=ACCEPTED)

    @on(Action.meter_values, skip_schema_validation=True)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], **untrusted: Any
    ) -> call_result.MeterValues:
        await self.session.record_meter_values(connector_id, meter_value, "1.6")
        return call_result.MeterValues()
