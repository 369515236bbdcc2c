"""`gridshare bridge …`: the OCPP central system and the SunSpec poller (wiring only)."""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import typer
import yaml
from pydantic import TypeAdapter, ValidationError

from gridshare.bridges import ocpp_server, sunspec
from gridshare.core.errors import ConfigError
from gridshare.core.logs import setup_logging
from gridshare.core.settings import get_settings
from gridshare.core.stack.process import raise_open_files_limit

app = typer.Typer(no_args_is_help=True, help="Bridges for real chargers (OCPP) and inverters.")


@app.command("ocpp")
def ocpp(
    host: str = typer.Option("0.0.0.0", "--host", help="Interface to listen on."),
    port: int = typer.Option(9000, "--port", min=1, max=65535),
    certfile: Path | None = typer.Option(None, "--certfile", help="TLS (security profile 2)."),
    keyfile: Path | None = typer.Option(None, "--keyfile"),
) -> None:
    """OCPP 1.6J / 2.0.1 central system at ws://HOST:PORT/{charger_id}."""
    settings = get_settings()
    setup_logging(settings.log_level)
    raise_open_files_limit()  # two sockets per charger: its WebSocket and its broker session
    tls = None
    if certfile is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certfile, keyfile)
    _run_until_signal(lambda stop: ocpp_server.run(settings, host, port, tls, stop))


@app.command("sunspec")
def sunspec_command(
    device: str | None = typer.Option(None, "--device", help="The pv-… device it feeds."),
    host: str | None = typer.Option(None, "--host"),
    port: int = typer.Option(502, "--port", min=1, max=65535),
    unit: int = typer.Option(1, "--unit", min=0, max=247, help="Modbus unit id."),
    interval: float = typer.Option(60.0, "--interval", min=1, help="Seconds between polls."),
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON list of inverters."),
) -> None:
    """Poll SunSpec inverters over Modbus TCP: one by flags, many by --config."""
    settings = get_settings()
    setup_logging(settings.log_level)
    inverters = _inverters(device, host, port, unit, interval, config)
    _run_until_signal(lambda stop: sunspec.run(settings, inverters, stop))


def _inverters(
    device: str | None,
    host: str | None,
    port: int,
    unit: int,
    interval: float,
    config: Path | None,
) -> list[sunspec.Inverter]:
    if config is None:
        if device is None or host is None:
            raise ConfigError("--device and --host", "are required without --config")
        return [sunspec.Inverter(device, host, port, unit, interval)]
    try:
        untrusted = yaml.safe_load(config.read_text())
        return TypeAdapter(list[sunspec.Inverter]).validate_python(untrusted)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"--config {config}", f"is not a list of inverters: {exc}") from exc


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    asyncio.run(runner())
