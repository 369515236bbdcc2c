"""The SunSpec poller: one PV inverter over Modbus TCP feeding one `pv-…` device.

Each poll reads the inverter model (101/102/103, else 701) and publishes one reading:
lifetime energy (the register's step with its scale factor, across a 32-bit wrap of the
acc32 counter), AC power, operating state as SPEC status; revenue is the step times the
pool's feed-in tariff. A failed poll publishes nothing; the poller reconnects with
exponential back-off and the next reading carries the cumulative meters, so nothing is
counted twice and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gridshare.bridges.device import BridgedMeter
from gridshare.bridges.meter import Sample, register_step
from gridshare.bridges.publisher import PublishError, Publishers, require_broker
from gridshare.bridges.store import BridgeStore
from gridshare.bridges.sunspec_map import BASES, END, SUNS, decode, model_points, scaled
from gridshare.core.errors import GridshareError
from gridshare.core.payloads import Status
from gridshare.core.settings import Settings

INVERTER_MODELS = (103, 102, 101)  # three phase first: the most complete figures
DER_MODEL = 701
MAX_READ = 120  # registers per request (Modbus allows 125)
WRAP_32 = 1 << 32
MAX_BACKOFF_SECONDS = 60.0
log = logging.getLogger(__name__)

# Operating state -> SPEC status: models 101-103 `St`, model 701 `InvSt`.
STATUS_1XX: dict[int, Status] = {4: "generating", 5: "generating", 7: "fault", 8: "idle"}
STATUS_701: dict[int, Status] = {3: "generating", 4: "generating", 6: "fault"}


class SunSpecError(GridshareError):
    """The device does not hold a SunSpec map the bridge can read."""


@dataclass(frozen=True)
class Inverter:
    """One inverter to poll, as the command line or the config file names it."""

    device: str
    host: str
    port: int = 502
    unit: int = 1
    interval: float = 60.0


@dataclass(frozen=True)
class Observation:
    """One poll's figures, raw where the step needs the register itself."""

    model: int
    energy_raw: int | None
    energy_sf: int | None
    wraps: bool
    power_w: float | None
    status: Status


class SunSpecClient:
    """A Modbus TCP client that finds the SunSpec map and reads models from it."""

    def __init__(self, inverter: Inverter) -> None:
        self.inverter = inverter
        self.client = AsyncModbusTcpClient(inverter.host, port=inverter.port, timeout=3, retries=0)
        self.models: dict[int, int] = {}

    async def connect(self) -> None:
        if not await self.client.connect():
            raise ConnectionError(f"no Modbus TCP at {self.inverter.host}:{self.inverter.port}")
        self.models = await self._discover()

    def close(self) -> None:
        self.client.close()

    async def read(self, address: int, count: int) -> list[int]:
        words: list[int] = []
        while count > 0:
            chunk = min(count, MAX_READ)
            response = await self.client.read_holding_registers(
                address, count=chunk, device_id=self.inverter.unit
            )
            if response.isError():
                raise ModbusException(f"read {chunk} at {address}: {response}")
            words += response.registers
            address, count = address + chunk, count - chunk
        return words

    async def model(self, model_id: int) -> dict[str, Any]:
        """A model's points by name (raw values; None where unimplemented)."""
        address = self.models[model_id]
        length = (await self.read(address + 1, 1))[0]
        registers = await self.read(address, length + 2)
        return {
            name: decode(point, registers)
            for name, point in model_points(model_id).items()
            if point.offset + point.size <= len(registers)
        }

    async def _discover(self) -> dict[int, int]:
        for base in BASES:
            try:
                marker = await self.read(base, 2)
            except ModbusException:
                continue
            if marker == SUNS:
                return await self._walk(base + 2)
        raise SunSpecError(
            f"{self.inverter.host}:{self.inverter.port} unit {self.inverter.unit}: "
            "no SunSpec marker at 40000, 0 or 50000"
        )

    async def _walk(self, address: int) -> dict[int, int]:
        models: dict[int, int] = {}
        for _ in range(256):
            model_id, length = await self.read(address, 2)
            if model_id == END:
                return models
            models[model_id] = address
            address += 2 + length
        raise SunSpecError("SunSpec map has no end marker")

    async def observe(self) -> Observation:
        """Read the inverter model (model 701 when there is no 1xx model or it has no energy)."""
        chosen = next((m for m in INVERTER_MODELS if m in self.models), None)
        if chosen is None and DER_MODEL not in self.models:
            raise SunSpecError(f"no inverter model (101-103, 701) among {sorted(self.models)}")
        if chosen is not None:
            points = await self.model(chosen)
            energy, energy_sf = points.get("WH"), points.get("WH_SF")
            power = scaled(points.get("W"), points.get("W_SF"))
            status = STATUS_1XX.get(points.get("St") or 0, "idle")
            if (energy is not None and energy_sf is not None) or DER_MODEL not in self.models:
                return Observation(chosen, energy, energy_sf, True, power, status)
        points = await self.model(DER_MODEL)
        return Observation(
            DER_MODEL,
            points.get("TotWhInj"),
            points.get("TotWh_SF"),
            False,
            scaled(points.get("W"), points.get("W_SF")),
            STATUS_701.get(points.get("InvSt") or 0, "idle"),
        )


def to_mwh(raw: int, sf: int) -> int:
    """raw x 10^sf Wh in mWh, exact for sf >= -3 (floored below)."""
    exponent = sf + 3
    return raw * 10**exponent if exponent >= 0 else raw // 10**-exponent


def energy_step(source: dict[str, Any], seen: Observation) -> int:
    """mWh since the previous poll: the counter's step (across a wrap) at an unchanged
    scale factor and model, else the difference of the scaled values."""
    if seen.energy_raw is None or seen.energy_sf is None:
        return 0
    previous, previous_sf = source.get("counter"), source.get("sf")
    if previous is None or previous_sf is None or source.get("model") != seen.model:
        return 0
    if previous_sf == seen.energy_sf:
        wrap = WRAP_32 if seen.wraps else None
        return to_mwh(register_step(previous, seen.energy_raw, wrap), seen.energy_sf)
    return register_step(to_mwh(previous, previous_sf), to_mwh(seen.energy_raw, seen.energy_sf))


def sample_of(meter: BridgedMeter, seen: Observation, ts: datetime) -> Sample:
    source = dict(meter.state.source) if meter.state else {}
    step = energy_step(source, seen)
    if seen.energy_raw is not None and seen.energy_sf is not None:
        source.update(counter=seen.energy_raw, sf=seen.energy_sf, model=seen.model)
    return Sample(
        ts=ts, status=seen.status, energy_step_mwh=step, power_w=seen.power_w, source=source
    )


async def poll(
    settings: Settings,
    inverter: Inverter,
    store: BridgeStore,
    publishers: Publishers,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Poll one inverter until `stop` is set (see module docstring). Readings carry the
    bridge's `clock` (Modbus has no timestamps; the demo passes its simulated clock)."""
    meter = await BridgedMeter.open(settings, inverter.device, store, publishers)
    backoff = 1.0
    fields = {"device_id": inverter.device, "host": inverter.host, "port": inverter.port}
    while not stop.is_set():
        client = SunSpecClient(inverter)
        try:
            await client.connect()
            log.info(
                "inverter connected", extra={"fields": {**fields, "models": sorted(client.models)}}
            )
            while not stop.is_set():
                seen = await client.observe()
                await meter.record(sample_of(meter, seen, clock()))
                backoff = 1.0
                await _sleep(stop, inverter.interval)
        except (ModbusException, ConnectionError, OSError, SunSpecError, PublishError) as exc:
            log.warning(
                "inverter poll failed; retrying",
                extra={"fields": {**fields, "error": str(exc)[:200], "retry_in_s": backoff}},
            )
            await _sleep(stop, backoff)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
        finally:
            client.close()
    await meter.release()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run(settings: Settings, inverters: list[Inverter], stop: asyncio.Event) -> None:
    """Poll every inverter concurrently until `stop` is set."""
    require_broker(settings)
    store = await BridgeStore.open(settings, max_size=4)
    publishers = Publishers()
    try:
        await asyncio.gather(*(poll(settings, i, store, publishers, stop) for i in inverters))
    finally:
        await publishers.close()
        await store.close()
