"""`gridshare sim`: run the device fleet simulator (wiring only; see fleet.py)."""

from __future__ import annotations

import contextlib
import re
import sys
from datetime import datetime

import typer
from rich.console import Console

from gridshare.core.errors import ConfigError, GridshareError
from gridshare.core.logs import setup_logging
from gridshare.core.payloads import DeviceType
from gridshare.core.settings import get_settings
from gridshare.gateway.identity import load_identities
from gridshare.gateway.provision import provision_ephemeral
from gridshare.sim.faults import DEFAULT_RATE, FaultPlan
from gridshare.sim.fleet import Fleet
from gridshare.sim.progress import LiveTable, log_lines

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`3600`, `3600s`, `30m`, `2h`, `14d` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ConfigError("--duration", f"{text!r} is not like 3600s, 30m, 2h or 14d")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def sim(
    devices: int | None = typer.Option(None, "--devices", min=1, help="How many devices."),
    speed: float = typer.Option(60.0, "--speed", min=0.001, help="Sim seconds per wall second."),
    duration: str = typer.Option("1d", "--duration", help="Sim time to run: 3600s, 2h, 14d."),
    faults: str = typer.Option("", "--faults", help="e.g. disconnect,duplicate:0.05 or all."),
    fault_rate: float = typer.Option(DEFAULT_RATE, "--fault-rate", help="Default fault rate."),
    seed: int = typer.Option(0, "--seed", help="Seed of every device's random streams."),
    ephemeral: bool = typer.Option(False, "--ephemeral", help="Throwaway devices in memory."),
    interval: float = typer.Option(300.0, "--interval", min=1, help="Sim seconds per reading."),
    start: datetime | None = typer.Option(None, "--start", help="Sim start (ISO, UTC)."),
    device_type: DeviceType | None = typer.Option(None, "--type", help="Only this type."),
) -> None:
    """Run the device fleet simulator against the broker."""
    settings = get_settings()
    setup_logging(settings.log_level)
    plan = FaultPlan.parse(faults, fault_rate)
    seconds = parse_duration(duration)
    if ephemeral:
        identities = provision_ephemeral(settings, devices or 100, device_type)
    else:
        identities = load_identities(settings, devices, device_type)
        if not identities or (devices and len(identities) < devices):
            raise GridshareError(
                f"sim: {len(identities)} provisioned device(s), {devices or 'some'} wanted; "
                "run `gridshare devices provision` or use --ephemeral"
            )
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()
    tty = sys.stdout.isatty()
    display = LiveTable(Console()) if tty else None
    fleet = Fleet(
        settings,
        identities,
        seed=seed,
        speed=speed,
        interval=interval,
        start=start,
        faults=plan,
        resume=not ephemeral,
        progress=display or log_lines(),
    )
    with display or contextlib.nullcontext():
        stats = fleet.run(seconds)
    Console().print(
        f"sim {stats.run_id}: {stats.acked:,} of {stats.published:,} publishes acknowledged "
        f"({stats.acked_readings:,} readings) from {stats.devices:,} devices; "
        f"acknowledged list: {stats.acked_path}"
    )
