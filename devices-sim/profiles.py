"""Physical behaviour of the three device types, stepped through simulated time.

Each profile holds its device's exact (float) meters and integrates them in sub-steps of at
most two minutes, so any reading interval gives the same energy up to the step size; reported
meters are the floors of the exact ones and therefore never decrease. Every random draw comes
from the device's own `random.Random`, so a seed reproduces a fleet exactly.

Base units: Wh, W, minor currency units (HK cents), seconds of simulated time (Unix, UTC).
Local time for daily patterns is Hong Kong (UTC+8, no daylight saving).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from gridshare.core.payloads import DeviceType

STEP_S = 120.0
HK_UTC_OFFSET_H = 8.0
HK_LATITUDE = math.radians(22.3)
HK_LONGITUDE_DEG = 114.17
CURRENCY = "HKD"


def local_hour(t: float) -> float:
    """Hour of day in Hong Kong, 0 <= h < 24."""
    return ((t / 3600.0) + HK_UTC_OFFSET_H) % 24.0


def day_of_year(t: float) -> int:
    """Day of the year (1..366) in UTC, close enough for the sun's declination."""
    days = t / 86400.0
    return int(days - 365.2425 * math.floor(days / 365.2425)) + 1


def solar_elevation(t: float) -> float:
    """The sun's elevation (radians) over Hong Kong at Unix time t (declination by day of
    year, hour angle from mean solar time; good to a degree or so)."""
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year(t)) / 365.0)
    solar_hour = ((t / 3600.0) + HK_LONGITUDE_DEG / 15.0) % 24.0
    hour_angle = math.radians(15.0 * (solar_hour - 12.0))
    sin_elevation = math.sin(HK_LATITUDE) * math.sin(declination) + math.cos(
        HK_LATITUDE
    ) * math.cos(declination) * math.cos(hour_angle)
    return math.asin(max(-1.0, min(1.0, sin_elevation)))


def peak_tariff(t: float) -> bool:
    """Peak hours 08:00-22:00 local."""
    return 8.0 <= local_hour(t) < 22.0


class Profile:
    """Common part: exact meters, maintenance windows, and the reading's fields."""

    type: DeviceType

    def __init__(self, rng: random.Random, t: float) -> None:
        self.rng = rng
        self.t = t
        self.energy_wh = 0.0
        self.revenue_minor = 0.0
        self.sessions = 0
        self.power_w = 0.0
        self.maintenance_until = 0.0

    def resume(self, energy_wh: int, revenue_minor: int, sessions: int) -> None:
        """Continue from meters a previous run reported."""
        self.energy_wh = float(energy_wh)
        self.revenue_minor = float(revenue_minor)
        self.sessions = sessions

    def advance(self, t: float) -> None:
        """Integrate from the current time to t."""
        while self.t < t:
            dt = min(STEP_S, t - self.t)
            if self.t < self.maintenance_until:
                self.power_w = 0.0
            else:
                self._maybe_start_maintenance(dt)
                self._step(self.t, dt)
            self.t += dt

    def fields(self) -> dict[str, Any]:
        """The reading's measured fields (no identity, seq, ts or signature)."""
        out: dict[str, Any] = {
            "status": self.status(),
            "power_w": round(self.power_w),
            "energy_wh_total": int(self.energy_wh),
            "revenue_minor_total": int(self.revenue_minor),
            "currency": CURRENCY,
        }
        soc = self.soc()
        if soc is not None:
            out["soc_pct"] = round(soc, 1)
        if self.type is not DeviceType.PV_PLANT:
            out["sessions_total"] = self.sessions
        return out

    def status(self) -> str:
        return "maintenance" if self.t < self.maintenance_until else self._status()

    def soc(self) -> float | None:
        return None

    def _maybe_start_maintenance(self, dt: float) -> None:
        """About one maintenance window per device per 60 days, 1-4 hours long."""
        if self.rng.random() < dt / (60 * 86400.0):
            self.maintenance_until = self.t + self.rng.uniform(3600, 4 * 3600)
            self.power_w = 0.0

    def _step(self, t: float, dt: float) -> None:
        raise NotImplementedError

    def _status(self) -> str:
        raise NotImplementedError


class PvPlant(Profile):
    """A rooftop PV plant: clear-sky output from the sun's elevation, a weather state drawn
    per day (clear, hazy, overcast) and minute-scale cloud noise; feed-in tariff by size."""

    type = DeviceType.PV_PLANT

    def __init__(self, rng: random.Random, t: float) -> None:
        super().__init__(rng, t)
        self.capacity_w = rng.choice((20_000, 50_000, 100_000, 200_000, 500_000))
        # Hong Kong feed-in tariff tiers: <=10 kW 5, <=200 kW 4, <=1 MW 3 HKD/kWh
        self.tariff_minor_per_kwh = 400 if self.capacity_w <= 200_000 else 300
        self.day = -1
        self.weather = 1.0
        self.cloud = 1.0

    def _step(self, t: float, dt: float) -> None:
        day = int(t // 86400)
        if day != self.day:
            self.day = day
            self.weather = self.rng.choice((1.0, 1.0, 0.85, 0.7, 0.45, 0.25))
        # AR(1) cloud cover around the day's weather, step by step
        self.cloud += 0.15 * (self.weather - self.cloud) + self.rng.gauss(0.0, 0.06)
        self.cloud = min(1.05, max(0.05, self.cloud))
        elevation = solar_elevation(t + dt / 2)
        clear_sky = math.sin(elevation) ** 1.2 if elevation > 0 else 0.0
        self.power_w = self.capacity_w * 0.85 * clear_sky * self.cloud
        energy = self.power_w * dt / 3600.0
        self.energy_wh += energy
        self.revenue_minor += energy * self.tariff_minor_per_kwh / 1000.0

    def _status(self) -> str:
        return "generating" if self.power_w > 0 else "idle"


# Charging sessions per hour by local hour (a busy public car park).
PILE_ARRIVALS = (
    0.10, 0.05, 0.05, 0.05, 0.05, 0.10, 0.25, 0.55, 0.70, 0.55, 0.40, 0.40,
    0.45, 0.45, 0.40, 0.40, 0.50, 0.70, 0.85, 0.80, 0.60, 0.40, 0.25, 0.15,
)  # fmt: skip


@dataclass
class Vehicle:
    capacity_wh: float
    soc: float
    target: float
    leaves_at: float


class ChargingPile(Profile):
    """An EV charger, 7 kW AC or 60 kW DC: Poisson arrivals by hour of day, the vehicle's
    state of charge rising (DC tapering above 80%), a peak/off-peak tariff per kWh."""

    type = DeviceType.CHARGING_PILE

    def __init__(self, rng: random.Random, t: float) -> None:
        super().__init__(rng, t)
        self.dc = rng.random() < 0.35
        self.max_power_w = 60_000.0 if self.dc else 7_000.0
        self.busyness = rng.uniform(0.6, 1.4) * (1.6 if self.dc else 1.0)
        # HKD per kWh in minor units: (peak, off-peak)
        self.tariffs = (550, 400) if self.dc else (350, 250)
        self.vehicle: Vehicle | None = None

    def soc(self) -> float | None:
        return self.vehicle.soc * 100.0 if self.vehicle else None

    def _step(self, t: float, dt: float) -> None:
        if self.vehicle is None:
            rate = PILE_ARRIVALS[int(local_hour(t))] * self.busyness
            if self.rng.random() < 1.0 - math.exp(-rate * dt / 3600.0):
                self._arrive(t)
            else:
                self.power_w = 0.0
                return
        vehicle = self.vehicle
        assert vehicle is not None
        power = self.max_power_w
        if self.dc and vehicle.soc > 0.8:
            power *= max(0.2, 1.0 - (vehicle.soc - 0.8) / 0.25)
        energy = min(power * dt / 3600.0, (vehicle.target - vehicle.soc) * vehicle.capacity_wh)
        energy = max(0.0, energy)
        vehicle.soc += energy / vehicle.capacity_wh
        self.power_w = energy * 3600.0 / dt
        self.energy_wh += energy
        tariff = self.tariffs[0] if peak_tariff(t) else self.tariffs[1]
        self.revenue_minor += energy * tariff / 1000.0
        if vehicle.soc >= vehicle.target - 1e-9 or t + dt >= vehicle.leaves_at:
            self.vehicle = None

    def _arrive(self, t: float) -> None:
        rng = self.rng
        stay = rng.uniform(1200, 3600) if self.dc else rng.uniform(3600, 8 * 3600)
        self.vehicle = Vehicle(
            capacity_wh=rng.uniform(40_000, 80_000),
            soc=rng.uniform(0.1, 0.5),
            target=rng.uniform(0.8, 1.0),
            leaves_at=t + stay,
        )
        self.sessions += 1

    def _status(self) -> str:
        return "charging" if self.vehicle is not None else "idle"


# Battery swaps per hour by local hour, for a 12-slot cabinet (commuter peaks).
SWAP_DEMAND = (
    0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.5, 3.5, 4.0, 2.0, 1.2, 1.2,
    1.8, 1.5, 1.2, 1.2, 1.8, 3.0, 4.5, 3.5, 2.0, 1.2, 0.8, 0.4,
)  # fmt: skip
SWAP_FEE_MINOR = 1200  # HK$12 per swap


class SwapCabinet(Profile):
    """A two-wheeler battery swap cabinet: swaps take the fullest battery (if at least 90%)
    and leave a depleted one; every slot below full charges, tapering above 90%."""

    type = DeviceType.BATTERY_SWAP

    def __init__(self, rng: random.Random, t: float) -> None:
        super().__init__(rng, t)
        self.slots = [rng.uniform(0.6, 1.0) for _ in range(rng.choice((8, 12, 16)))]
        self.battery_wh = rng.choice((1_450.0, 1_750.0, 2_000.0))
        self.slot_power_w = rng.choice((400.0, 500.0, 600.0))
        self.busyness = rng.uniform(0.6, 1.4) * len(self.slots) / 12
        self.swapped_at = -1.0

    def soc(self) -> float | None:
        return 100.0 * sum(self.slots) / len(self.slots)

    def _step(self, t: float, dt: float) -> None:
        rate = SWAP_DEMAND[int(local_hour(t))] * self.busyness
        arrivals = _poisson(self.rng, rate * dt / 3600.0)
        for _ in range(arrivals):
            best = max(range(len(self.slots)), key=self.slots.__getitem__)
            if self.slots[best] >= 0.9:
                self.slots[best] = self.rng.uniform(0.1, 0.35)
                self.sessions += 1
                self.revenue_minor += SWAP_FEE_MINOR
                self.swapped_at = t
        slots, capacity, hours = self.slots, self.battery_wh, dt / 3600.0
        charged = 0.0
        for index, soc in enumerate(slots):
            if soc >= 1.0:
                continue
            taper = 1.0 if soc < 0.9 else ((1.0 - soc) * 10 if soc < 0.985 else 0.15)
            energy = self.slot_power_w * taper * hours
            room = (1.0 - soc) * capacity
            if energy >= room:
                energy, slots[index] = room, 1.0
            else:
                slots[index] = soc + energy / capacity
            charged += energy
        self.energy_wh += charged
        self.power_w = charged / hours

    def _status(self) -> str:
        if self.t - self.swapped_at <= STEP_S:
            return "swapping"
        return "charging" if self.power_w > 0 else "idle"


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw for small means (Knuth)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


PROFILES: dict[DeviceType, type[Profile]] = {
    DeviceType.PV_PLANT: PvPlant,
    DeviceType.CHARGING_PILE: ChargingPile,
    DeviceType.BATTERY_SWAP: SwapCabinet,
}


def make_profile(device_type: DeviceType, rng: random.Random, t: float) -> Profile:
    return PROFILES[device_type](rng, t)
