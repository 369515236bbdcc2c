"""An inverter on the bench: a pymodbus Modbus TCP server holding a SunSpec register map.

The demo and the tests drive the bridge with it, so the bridge meets a real Modbus stack.
Values change through `set`; `stop` and `start` take it off and back onto the network.
"""

from __future__ import annotations

from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gridshare.bridges.sunspec_map import build_map, encode, model_offsets, model_points

DEFAULT_MODELS: list[tuple[int, dict[str, Any]]] = [
    (1, {"Mn": "gridshare", "Md": "bench inverter", "SN": "GS-0001", "Vr": "1.0"}),
    (103, {"W": 0, "W_SF": 0, "WH": 1, "WH_SF": 0, "St": 4, "Hz": 5000, "Hz_SF": -2}),
]


class SunSpecPeer:
    """See module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        unit: int = 1,
        base: int = 40000,
        models: list[tuple[int, dict[str, Any]]] | None = None,
    ) -> None:
        self.host, self.port, self.unit, self.base = host, port, unit, base
        self.registers = build_map(models or DEFAULT_MODELS)
        self.offsets = model_offsets(self.registers)
        self.server: ModbusTcpServer | None = None

    def set(self, model_id: int, **values: int | str | None) -> None:
        """Write points of a model (None: unimplemented)."""
        start = self.offsets[model_id]
        points = model_points(model_id)
        for name, value in values.items():
            point = points[name]
            at = start + point.offset
            self.registers[at : at + point.size] = encode(point, value)

    async def start(self) -> None:
        device = SimDevice(
            id=self.unit,
            simdata=[
                SimData(
                    address=self.base,
                    values=list(self.registers),
                    datatype=DataType.REGISTERS,
                )
            ],
            action=self._serve_current,
        )
        self.server = ModbusTcpServer(device, address=(self.host, self.port))
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def _serve_current(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | None,
    ) -> None:
        """Every request sees the values as `set` left them."""
        current_registers[: len(self.registers)] = self.registers
