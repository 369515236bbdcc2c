"""The SunSpec poller against a pymodbus server holding a map built from pysunspec2's model
definitions, through Mosquitto and the real ingest worker into the telemetry table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psycopg
import pytest

from gridshare.bridges.publisher import Publishers
from gridshare.bridges.store import BridgeStore
from gridshare.bridges.sunspec import Inverter, SunSpecClient, poll
from gridshare.bridges.sunspec_map import decode, encode, model_points
from gridshare.bridges.sunspec_peer import DEFAULT_MODELS, SunSpecPeer
from gridshare.core.payloads import DeviceType
from gridshare.core.settings import Settings
from gridshare.gateway.ocpp import set_tariff
from gridshare.gateway.provision import provision
from tests.ingest.fleet import wait_until
from tests.support import free_port

FEED_IN = 400  # HK cents per kWh
TOP = 1 << 32


@pytest.fixture(scope="module")
def pv_device(stack_settings: Settings, conn_module: psycopg.Connection) -> str:
    pool = provision(stack_settings, 1, 1, device_type=DeviceType.PV_PLANT, chain=False).pools[0]
    set_tariff(stack_settings, pool, FEED_IN)
    return conn_module.execute(
        "SELECT min(device_id) FROM devices WHERE pool = %s", (pool,)
    ).fetchone()[0]


@pytest.fixture(scope="module")
def conn_module(stack_settings: Settings):  # type: ignore[no-untyped-def]
    with psycopg.connect(stack_settings.db_url, autocommit=True) as connection:
        yield connection


def test_unimplemented_values_decode_as_absent() -> None:
    points = model_points(103)
    assert decode(points["W"], [0] * points["W"].offset + [0x8000]) is None
    assert decode(points["W_SF"], [0] * points["W_SF"].offset + [0xFFFE]) == -2
    assert decode(points["St"], [0] * points["St"].offset + [0xFFFF]) is None
    wh = points["WH"]
    assert decode(wh, [0] * wh.offset + encode(wh, TOP - 1)) == TOP - 1
    assert decode(wh, [0] * wh.offset + [0, 0]) is None  # accumulators: 0 is "not implemented"
    hz = model_points(701)["Hz"]
    assert decode(hz, [0] * hz.offset + [0x8000, 0]) is not None  # uint32: only 0xFFFFFFFF
    assert decode(hz, [0] * hz.offset + [0xFFFF, 0xFFFF]) is None


@pytest.mark.parametrize("base", [0, 50000])
def test_map_found_at_other_bases(base: int) -> None:
    async def probe() -> dict[int, int]:
        peer = SunSpecPeer("127.0.0.1", free_port(), base=base)
        await peer.start()
        try:
            client = SunSpecClient(Inverter("pv-x", "127.0.0.1", peer.port))
            await client.connect()
            seen = await client.observe()
            client.close()
            assert seen.model == 103 and seen.energy_raw == 1
            return client.models
        finally:
            await peer.stop()

    assert sorted(asyncio.run(probe())) == [1, 103]


def test_model_701_when_there_is_no_1xx_model() -> None:
    async def probe():  # type: ignore[no-untyped-def]
        models = [
            DEFAULT_MODELS[0],
            (701, {"W": 1500, "W_SF": 1, "TotWhInj": 123_456, "TotWh_SF": 0, "InvSt": 3}),
        ]
        peer = SunSpecPeer("127.0.0.1", free_port(), models=models)
        await peer.start()
        try:
            client = SunSpecClient(Inverter("pv-x", "127.0.0.1", peer.port))
            await client.connect()
            seen = await client.observe()
            client.close()
            return seen
        finally:
            await peer.stop()

    seen = asyncio.run(probe())
    assert (seen.model, seen.energy_raw, seen.power_w, seen.status) == (
        701,
        123_456,
        15000.0,
        "generating",
    )


def test_poller_scale_factor_wrap_unimplemented_and_outage(
    stack_settings: Settings, ingest: None, pv_device: str, conn_module: psycopg.Connection
) -> None:
    """Energy steps: +1000 Wh, +1000 across the 32-bit wrap, 0 across a scale factor change,
    +1000 at the new scale, then +2000 while the inverter was unreachable: 5000 Wh."""
    port = free_port()

    def counter() -> int | None:
        row = conn_module.execute(
            "SELECT source->>'counter', source->>'sf' FROM bridge_state WHERE device_id = %s",
            (pv_device,),
        ).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    async def until(check: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        peer = SunSpecPeer("127.0.0.1", port)
        peer.set(103, WH=TOP - 1500, W=2500, W_SF=0)
        await peer.start()
        store = await BridgeStore.open(stack_settings, max_size=2)
        publishers = Publishers()
        stop = asyncio.Event()
        inverter = Inverter(pv_device, "127.0.0.1", port, interval=0.2)
        task = asyncio.ensure_future(poll(stack_settings, inverter, store, publishers, stop))
        steps: list[tuple[dict, tuple[int, int]]] = [
            ({}, (TOP - 1500, 0)),
            ({"WH": TOP - 500}, (TOP - 500, 0)),
            ({"WH": 500}, (500, 0)),  # wrapped
            ({"WH": 50, "WH_SF": 1}, (50, 1)),  # same 500 Wh, new scale
            ({"WH": 150, "W": None, "St": None}, (150, 1)),  # unimplemented power and state
        ]
        try:
            for values, expected in steps:
                peer.set(103, **values)
                await until(lambda e=expected: counter() == e, f"counter {expected}")
            await peer.stop()  # the inverter goes away
            await asyncio.sleep(2.0)
            peer.set(103, WH=350, W=1800)
            await peer.start()
            await until(lambda: counter() == (350, 1), "polls after the outage")
            assert task.done() is False
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await publishers.close()
            await store.close()
            await peer.stop()

    asyncio.run(scenario())
    state = conn_module.execute(
        "SELECT last_seq, energy_mwh_total FROM bridge_state WHERE device_id = %s", (pv_device,)
    ).fetchone()
    assert state[1] == 5_000_000
    wait_until(
        lambda: (
            conn_module.execute(
                "SELECT max(seq) FROM telemetry WHERE device_id = %s", (pv_device,)
            ).fetchone()[0]
            == state[0]
        ),
        30,
        "the last reading stored",
    )
    rows = conn_module.execute(
        "SELECT seq, energy_wh_total, revenue_minor_total, power_w, status FROM telemetry"
        " WHERE device_id = %s ORDER BY seq",
        (pv_device,),
    ).fetchall()
    energies = [r[1] for r in rows]
    assert energies == sorted(energies) and energies[0] == 0 and energies[-1] == 5000
    assert rows[-1][2] == 5000 * FEED_IN // 1000
    assert set(energies) == {0, 1000, 2000, 3000, 5000}
    quarantined = conn_module.execute(
        "SELECT count(*) FROM quarantine WHERE device_id = %s", (pv_device,)
    ).fetchone()[0]
    assert quarantined == 0
