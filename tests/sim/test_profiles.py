"""Device behaviour without a network: determinism, monotonic meters, physical plausibility."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime

import pytest

from gridshare.core.payloads import DeviceType, parse_telemetry
from gridshare.core.signing import recover
from gridshare.gateway.identity import DeviceIdentity, new_identity
from gridshare.sim.device import SimDevice, generate
from gridshare.sim.faults import FaultPlan
from gridshare.sim.profiles import ChargingPile, PvPlant, SwapCabinet, local_hour, solar_elevation

START = datetime(2026, 6, 1, tzinfo=UTC).timestamp()  # 08:00 in Hong Kong
METERS = ("energy_wh_total", "sessions_total", "revenue_minor_total")


def identities() -> list[DeviceIdentity]:
    return [
        new_identity("cp-000001", DeviceType.CHARGING_PILE, "charging-pile-1"),
        new_identity("pv-000001", DeviceType.PV_PLANT, "pv-plant-1"),
        new_identity("bs-000001", DeviceType.BATTERY_SWAP, "battery-swap-1"),
    ]


def run(fleet: list[DeviceIdentity], seed: int, days: float, faults: str = "") -> list[bytes]:
    devices = [SimDevice(i, seed, START, 300.0, FaultPlan.parse(faults)) for i in fleet]
    return [
        m.payload for _, messages, _ in generate(devices, START + days * 86400) for m in messages
    ]


def test_same_seed_same_bytes_other_seed_other_readings() -> None:
    fleet = identities()
    first, second = run(fleet, 7, 1), run(fleet, 7, 1)
    assert first == second and len(first) > 3 * 250
    assert run(fleet, 8, 1) != first


def test_faults_do_not_change_the_readings_themselves() -> None:
    fleet = identities()
    clean = [json.loads(p) for p in run(fleet, 3, 1)]
    faulty = [json.loads(p) for p in run(fleet, 3, 1, "duplicate:0.3,disconnect:0.3")]
    assert {p["sig"]: p for p in faulty} == {p["sig"]: p for p in clean}


def test_readings_are_valid_signed_and_meters_never_decrease() -> None:
    fleet = identities()
    last: dict[str, dict] = {}
    for payload in run(fleet, 1, 3):
        reading, canonical = parse_telemetry(payload)
        device = next(i for i in fleet if i.device_id == reading.device_id)
        assert recover(canonical, reading.sig) == device.address
        previous = last.get(reading.device_id)
        if previous is not None:
            assert reading.seq == previous["seq"] + 1
            assert reading.ts > previous["ts"]
            for meter in METERS:
                if getattr(reading, meter) is not None:
                    assert getattr(reading, meter) >= previous[meter]
        last[reading.device_id] = reading.model_dump()
    pile, pv, swap = (last[i.device_id] for i in fleet)
    assert pile["sessions_total"] > 3 and pile["revenue_minor_total"] > 0
    assert pv["energy_wh_total"] > 0 and pv["soc_pct"] is None and pv["sessions_total"] is None
    assert swap["sessions_total"] > 10 and swap["energy_wh_total"] > 0


def test_pv_is_zero_at_night_and_generates_around_noon() -> None:
    plant = PvPlant(random.Random(1), START)
    by_hour: dict[int, list[float]] = {}
    t = START
    for _ in range(4 * 24 * 12):  # four days in five-minute readings
        t += 300
        plant.advance(t)
        by_hour.setdefault(int(local_hour(t)), []).append(plant.power_w)
        if plant.power_w == 0:
            assert plant.status() in ("idle", "maintenance")
    for hour in (0, 1, 2, 3, 4, 21, 22, 23):
        assert max(by_hour[hour]) == 0.0
    assert min(by_hour[12]) > 0 and max(by_hour[12]) <= plant.capacity_w


def test_sun_over_hong_kong() -> None:
    noon_june = datetime(2026, 6, 21, 4, 14, tzinfo=UTC).timestamp()  # ~12:14 local solar noon
    noon_december = datetime(2026, 12, 21, 4, 14, tzinfo=UTC).timestamp()
    assert math.degrees(solar_elevation(noon_june)) == pytest.approx(88.8, abs=2)
    assert math.degrees(solar_elevation(noon_december)) == pytest.approx(44.3, abs=2)
    midnight = datetime(2026, 6, 21, 16, 0, tzinfo=UTC).timestamp()
    assert solar_elevation(midnight) < 0


def test_pile_power_matches_its_charger_and_soc_rises() -> None:
    for seed in range(6):
        pile = ChargingPile(random.Random(seed), START)
        t, previous_soc, sessions = START, None, 0
        for _ in range(2 * 24 * 12):
            t += 300
            pile.advance(t)
            assert 0 <= pile.power_w <= pile.max_power_w + 1e-6
            soc = pile.soc()
            assert (soc is None) == (pile.status() != "charging")
            if soc is not None and previous_soc is not None and pile.sessions == sessions:
                assert soc >= previous_soc
            previous_soc, sessions = soc, pile.sessions


def test_swap_cabinet_soc_is_the_mean_of_its_slots() -> None:
    cabinet = SwapCabinet(random.Random(5), START)
    cabinet.advance(START + 86400)
    assert cabinet.soc() == pytest.approx(100 * sum(cabinet.slots) / len(cabinet.slots))
    assert cabinet.sessions > 0
    assert cabinet.revenue_minor == cabinet.sessions * 1200
