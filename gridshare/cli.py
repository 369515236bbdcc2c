"""The `gridshare` command: wiring only; each component owns its commands."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from gridshare.api.cli import serve as api_serve
from gridshare.core import db, stack
from gridshare.core.broker_auth import BrokerAuth
from gridshare.core.chain import cli as chain_cli
from gridshare.core.errors import GridshareError
from gridshare.core.logs import setup_logging
from gridshare.core.settings import Settings
from gridshare.core.stack.mosquitto import render_config
from gridshare.demo import DemoPlan
from gridshare.demo import run as run_demo
from gridshare.gateway import cli as devices_cli
from gridshare.ingest.cli import ingest
from gridshare.oracle import cli as oracle_cli
from gridshare.sim import cli as sim_cli

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
stack_app = typer.Typer(no_args_is_help=True, help="The local PostgreSQL, Mosquitto and Anvil.")
app.add_typer(stack_app, name="stack")
app.command("api")(api_serve)
app.command("deploy")(chain_cli.deploy)
app.add_typer(devices_cli.app, name="devices")
app.command("sim")(sim_cli.sim)
app.command("ingest")(ingest)
app.add_typer(oracle_cli.oracle_app, name="oracle")
app.add_typer(oracle_cli.operator_app, name="operator")
app.add_typer(oracle_cli.investor_app, name="investor")
console = Console()


@stack_app.command("up")
def stack_up() -> None:
    """Start the local stack (a no-op for services already running) and migrate the schema."""
    settings = Settings()
    for name, started in stack.up(settings).items():
        console.print(f"{name}: {'started' if started else 'already running'}")
    applied = db.migrate(settings)
    console.print(f"schema: {len(applied)} migration(s) applied")


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started."""
    for name, was_running in stack.down(Settings()).items():
        console.print(f"{name}: {'stopped' if was_running else 'not running'}")


@stack_app.command("status")
def stack_status() -> None:
    """One line per service."""
    table = Table(show_header=False, box=None)
    for name, state in stack.status(Settings()).items():
        table.add_row(name, state)
    console.print(table)


@stack_app.command("broker-config")
def stack_broker_config(listen: str = "0.0.0.0:1883") -> None:
    """Write the broker's config, password and ACL files into the state dir, for a broker
    run elsewhere (docker-compose mounts the state volume into the Mosquitto container)."""
    settings = Settings()
    auth = BrokerAuth(settings)
    auth.ensure_service_accounts()
    host, _, port = listen.rpartition(":")
    config = auth.dir / "mosquitto.conf"
    config.write_text(render_config(auth, host, int(port), as_root=True))
    console.print(f"broker config: {config}")


@app.command("demo")
def demo(
    once: bool = typer.Option(False, "--once", help="Exit after printing the summary."),
    fresh: bool = typer.Option(False, "--fresh", help="Start from an empty state dir."),
) -> None:
    """Everything end to end on the local stack, then keep the API up until Ctrl-C."""
    setup_logging("WARNING")  # the progress display speaks; children log to files
    run_demo(Settings(), DemoPlan(), once=once, fresh=fresh)


@app.command("migrate")
def migrate() -> None:
    """Apply pending database migrations."""
    applied = db.migrate(Settings())
    console.print(f"schema: {len(applied)} migration(s) applied")


def main() -> None:
    """Entry point: any project error or bad setting becomes one line and exit code 1."""
    try:
        app()
    except GridshareError as exc:
        print(f"gridshare: {exc}", file=sys.stderr)
        sys.exit(1)
    except ValidationError as exc:
        first = exc.errors()[0]
        setting = "GRIDSHARE_" + "_".join(str(p) for p in first["loc"]).upper()
        print(f"gridshare: configuration: {setting}: {first['msg']}", file=sys.stderr)
        sys.exit(1)
