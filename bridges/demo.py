"""Real hardware in `gridshare demo`: one OCPP 2.0.1 charger and one SunSpec inverter,
driven by real protocol peers on the demo's simulated clock, attested like the simulated
fleet. The charger talks to `gridshare bridge ocpp` (a child process of the demo); the
inverter is a pymodbus server polled by the SunSpec poller in the demo's own process, since
Modbus carries no timestamps and the poller must read the simulated clock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gridshare.bridges import sunspec
from gridshare.bridges.peers import BenchCharger, Clock, drive_inverter
from gridshare.bridges.publisher import Publishers
from gridshare.bridges.store import BridgeStore
from gridshare.bridges.sunspec_peer import SunSpecPeer
from gridshare.core import db
from gridshare.core.errors import GridshareError
from gridshare.core.payloads import DeviceType
from gridshare.core.settings import Settings
from gridshare.gateway.ocpp import ProvisionedCharger, provision_bridged, provision_ocpp

CHARGER_ID = "demo-charger-1"
INVERTER_DEVICE = "pv-sunspec-demo-1"
TARIFFS = {"charging_pile": 250, "pv_plant": 400}  # HK cents per kWh (pile; feed-in)
OCPP_PORT_OFFSET = 1000  # the bridge listens on the API port + 1000 (9000 by default)


@dataclass(frozen=True)
class DemoBridges:
    charger: ProvisionedCharger
    inverter_device: str
    ocpp_port: int

    @property
    def device_ids(self) -> set[str]:
        return {self.charger.device_id, self.inverter_device}

    @property
    def ocpp_args(self) -> list[str]:
        return ["bridge", "ocpp", "--host", "127.0.0.1", "--port", str(self.ocpp_port)]


def prepare(settings: Settings, pools: list[str]) -> DemoBridges:
    """Tariffs for pools without one, the charger's and the inverter's devices."""
    with db.connect(settings, autocommit=True) as conn:
        kinds = dict(
            conn.execute(
                "SELECT name, device_type FROM pools WHERE name = ANY(%s)", (pools,)
            ).fetchall()
        )
        for pool, kind in kinds.items():
            if kind in TARIFFS:
                conn.execute(
                    "UPDATE pools SET tariff_minor_per_kwh = %s"
                    " WHERE name = %s AND tariff_minor_per_kwh IS NULL",
                    (TARIFFS[kind], pool),
                )
    pile = next((p for p, k in kinds.items() if k == DeviceType.CHARGING_PILE.value), None)
    pv = next((p for p, k in kinds.items() if k == DeviceType.PV_PLANT.value), None)
    if pile is None or pv is None:
        raise GridshareError(
            "demo: the bridged charger and inverter need a charging-pile and a pv-plant "
            "pool (2 pools or more)"
        )
    charger = provision_ocpp(settings, pile, CHARGER_ID)
    provision_bridged(settings, pv, INVERTER_DEVICE, DeviceType.PV_PLANT)
    return DemoBridges(charger, INVERTER_DEVICE, settings.api_port + OCPP_PORT_OFFSET)


def summary(settings: Settings, bridges: DemoBridges) -> str:
    """One line per bridged device: readings stored and meters."""
    with db.connect(settings, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT device_id, readings, coalesce(energy_wh_total, 0),"
            " coalesce(revenue_minor_total, 0) FROM device_state"
            " WHERE device_id = ANY(%s) ORDER BY device_id",
            (sorted(bridges.device_ids),),
        ).fetchall()
    return "\n".join(
        f"  {device}: {readings} readings, {energy / 1000:,.0f} kWh, HKD {revenue / 100:,.0f}"
        for device, readings, energy, revenue in rows
    )


def run_peers(
    settings: Settings,
    bridges: DemoBridges,
    clock: Clock,
    until: float,
    stop: threading.Event,
    interval: float = 900.0,
) -> None:
    """The charger and the inverter (with its poller) until `until` on `clock` (a thread's
    target; `stop` ends it early)."""
    asyncio.run(_peers(settings, bridges, clock, until, stop, interval))


async def _peers(
    settings: Settings,
    bridges: DemoBridges,
    clock: Clock,
    until: float,
    stop: threading.Event,
    interval: float,
) -> None:
    done = asyncio.Event()
    peer = SunSpecPeer("127.0.0.1", _free_port())
    await peer.start()
    store = await BridgeStore.open(settings, max_size=2)
    publishers = Publishers()
    charger = BenchCharger(
        f"ws://127.0.0.1:{bridges.ocpp_port}",
        bridges.charger.charger_id,
        bridges.charger.password,
        clock,
        step=interval,
    )
    inverter = sunspec.Inverter(bridges.inverter_device, "127.0.0.1", peer.port, interval=0.05)
    tasks = [
        asyncio.ensure_future(charger.run(until, done)),
        asyncio.ensure_future(drive_inverter(peer, clock, until, done)),
        asyncio.ensure_future(
            sunspec.poll(settings, inverter, store, publishers, done, clock=_as_datetime(clock))
        ),
    ]
    try:
        while not stop.is_set() and clock() < until and not tasks[0].done():
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a last poll after the end
    finally:
        done.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await publishers.close()
        await store.close()
        await peer.stop()
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _as_datetime(clock: Clock) -> Callable[[], datetime]:
    return lambda: datetime.fromtimestamp(clock(), UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
