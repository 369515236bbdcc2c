"""Protocol peers on the bench, following a clock: an OCPP 2.0.1 charger (the `ocpp`
library's own ChargePoint over `websockets`) and the driver of a SunSpec inverter
(`SunSpecPeer`). The demo runs them on its simulated clock; the benchmark runs many
chargers on the wall clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
from collections.abc import Callable
from datetime import UTC, datetime

import websockets
from ocpp.v201 import ChargePoint, call

from gridshare.bridges.sunspec_peer import SunSpecPeer
from gridshare.core.payloads import format_ts

ENERGY = "Energy.Active.Import.Register"
HK_OFFSET_HOURS = 8  # daylight follows Hong Kong time
Clock = Callable[[], float]  # Unix seconds


def _stamp(seconds: float) -> str:
    return format_ts(datetime.fromtimestamp(seconds, UTC))


def _meter(seconds: float, wh: float, power_w: float) -> list[dict]:
    return [
        {
            "timestamp": _stamp(seconds),
            "sampled_value": [
                {"value": round(wh), "measurand": ENERGY, "unit_of_measure": {"unit": "Wh"}},
                {
                    "value": power_w,
                    "measurand": "Power.Active.Import",
                    "unit_of_measure": {"unit": "W"},
                },
            ],
        }
    ]


class BenchCharger:
    """A charger with one EVSE: a session of `session_hours` starting every `every_hours`
    at `power_w`, a meter value every `step` seconds of its clock (at `phase` into each)."""

    def __init__(
        self,
        url: str,
        charger_id: str,
        password: str,
        clock: Clock,
        step: float = 900.0,
        power_w: float = 7200.0,
        every_hours: int = 6,
        session_hours: int = 2,
        phase: float = 0.0,
    ) -> None:
        self.url, self.charger_id, self.password = url, charger_id, password
        self.clock, self.step, self.power_w = clock, step, power_w
        self.every, self.session = every_hours * 3600, session_hours * 3600
        self.phase = phase  # seconds into each step: chargers are not synchronised
        self.register_wh = 10_000.0
        self.sent = 0  # answered
        self.refused = 0  # answered with a CALLERROR
        self.answer_seconds: list[float] = []
        self._transaction: str | None = None
        self._seq_no = 0

    async def run(self, until: float, stop: asyncio.Event, begin: float = 0.0) -> None:
        """Connect and boot at once; send from `begin` (on the clock) until `until`."""
        token = base64.b64encode(f"{self.charger_id}:{self.password}".encode()).decode()
        async with websockets.connect(
            f"{self.url}/{self.charger_id}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {token}"},
            open_timeout=60,
        ) as ws:
            cp = ChargePoint(self.charger_id, ws, response_timeout=60)
            receiver = asyncio.ensure_future(cp.start())
            try:
                await cp.call(
                    call.BootNotification(
                        charging_station={"model": "Bench", "vendor_name": "gridshare"},
                        reason="PowerUp",
                    )
                )
                first = max(self.clock(), begin) - self.phase
                due = math.ceil(first / self.step) * self.step + self.phase
                while due < until and not stop.is_set():
                    if self.clock() < due:
                        await asyncio.sleep(min(0.05, max(0.001, due - self.clock())))
                        continue
                    await self._tick(cp, due)
                    due += self.step
            finally:
                receiver.cancel()
                with contextlib.suppress(BaseException):
                    await receiver

    async def _tick(self, cp: ChargePoint, due: float) -> None:
        charging = due % self.every < self.session
        if charging and self._transaction is not None:
            self.register_wh += self.power_w * self.step / 3600
        if charging or self._transaction is not None:
            if self._transaction is None:
                self._transaction, kind = f"{self.charger_id}-{int(due)}", "Started"
            else:
                kind = "Updated" if charging else "Ended"
            message = call.TransactionEvent(
                event_type=kind,
                timestamp=_stamp(due),
                trigger_reason="MeterValuePeriodic" if kind == "Updated" else "CablePluggedIn",
                seq_no=self._seq_no,
                transaction_info={
                    "transaction_id": self._transaction,
                    "charging_state": "Charging" if charging else "Idle",
                },
                evse={"id": 1, "connector_id": 1},
                meter_value=_meter(due, self.register_wh, self.power_w if charging else 0.0),
            )
            self._seq_no += 1
            if kind == "Ended":
                self._transaction = None
        else:
            message = call.MeterValues(evse_id=1, meter_value=_meter(due, self.register_wh, 0.0))
        started = asyncio.get_running_loop().time()
        answer = await cp.call(message, skip_schema_validation=True)  # the bridge validates
        if answer is None:  # a CALLERROR: a real charger would send the message again
            self.refused += 1
            return
        self.answer_seconds.append(asyncio.get_running_loop().time() - started)
        self.sent += 1


async def drive_inverter(
    peer: SunSpecPeer, clock: Clock, until: float, stop: asyncio.Event, peak_w: float = 40_000
) -> None:
    """Move the inverter's registers along a daylight curve (06:00-18:00 Hong Kong time)."""
    wh, last = 1_000_000.0, clock()
    while not stop.is_set() and last < until:
        await asyncio.sleep(0.02)
        now = clock()
        hour = (now / 3600 + HK_OFFSET_HOURS) % 24
        power = peak_w * max(0.0, math.sin(math.pi * (hour - 6) / 12))
        wh += power * (now - last) / 3600
        last = now
        peer.set(103, W=round(power), WH=int(wh) % (1 << 32), St=4 if power > 0 else 2)
