"""Frames the `ocpp` library cannot unpack still get an answer.

The library logs a frame that is not OCPP-J (not JSON, not a list, a wrong message type) and
answers nothing, so the charger waits for its timeout. OCPP-J asks for a CALLERROR
(FormatViolation / ProtocolError / RpcFrameworkError) with the frame's message id, or "-1"
when it has none; the connection stays open and the charger may go on.
"""

from __future__ import annotations

import json
import logging

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, MessageType, unpack

from gridshare.bridges.ocpp_schemas import validate_request

log = logging.getLogger(__name__)


def message_id(untrusted_raw: str | bytes) -> str:
    """The frame's message id, when the frame is a JSON list that has one; else "-1"."""
    try:
        untrusted = json.loads(untrusted_raw)
    except (ValueError, UnicodeDecodeError):
        return "-1"
    if isinstance(untrusted, list) and len(untrusted) > 1 and isinstance(untrusted[1], str):
        return untrusted[1][:36]
    return "-1"


class FrameErrors:
    """Mixin before the library's `ChargePoint`: answer unparseable frames, validate requests
    (`ocpp_schemas`; the handlers skip the library's slower validation), route the rest."""

    id: str
    logger: logging.Logger

    async def route_message(self, raw_msg: str | bytes) -> None:
        try:
            msg = unpack(raw_msg)
        except OCPPError as error:
            log.warning(
                "malformed OCPP frame",
                extra={"fields": {"charger_id": self.id, "error": error.code}},
            )
            reply = CallError(message_id(raw_msg), error.code, error.description, {})
            await self._send(reply.to_json())  # type: ignore[attr-defined]
            return
        if isinstance(msg, Call):
            try:
                validate_request(self._ocpp_version, msg.action, msg.payload)  # type: ignore[attr-defined]
                await self._handle_call(msg)  # type: ignore[attr-defined]
            except OCPPError as error:
                await self._send(msg.create_call_error(error).to_json())  # type: ignore[attr-defined]
        elif msg.message_type_id in (MessageType.CallResult, MessageType.CallError):
            self._response_queue.put_nowait(msg)  # type: ignore[attr-defined]
