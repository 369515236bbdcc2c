"""The `gridshare` command: wiring only; each component owns its commands."""

from __future__ import annotations

import sys

import typer

from gridshare.api.cli import serve as api_serve
from gridshare.audit import audit_command
from gridshare.bridges import cli as bridges_cli
from gridshare.core.chain import cli as chain_cli
from gridshare.core.chain import servicing_cli
from gridshare.core.errors import GridshareError
from gridshare.core.stack import cli as stack_cli
from gridshare.demo import demo_command
from gridshare.gateway import cli as devices_cli
from gridshare.ingest.cli import ingest
from gridshare.oracle import cli as oracle_cli
from gridshare.sim import cli as sim_cli

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(stack_cli.stack_app, name="stack")
app.command("migrate")(stack_cli.migrate)
app.command("demo")(demo_command)
app.command("api")(api_serve)
app.command("deploy")(chain_cli.deploy)
app.add_typer(devices_cli.app, name="devices")
app.add_typer(bridges_cli.app, name="bridge")
app.command("sim")(sim_cli.sim)
app.command("ingest")(ingest)
app.add_typer(oracle_cli.oracle_app, name="oracle")
app.add_typer(oracle_cli.operator_app, name="operator")
app.add_typer(oracle_cli.investor_app, name="investor")
app.command("audit")(audit_command)
app.add_typer(servicing_cli.guardian_app, name="guardian")
app.add_typer(servicing_cli.agent_app, name="agent")


def main() -> None:
    """Entry point: any project error (a bad setting too) becomes one line and exit code 1."""
    try:
        app()
    except GridshareError as exc:
        print(f"gridshare: {exc}", file=sys.stderr)
        sys.exit(1)
