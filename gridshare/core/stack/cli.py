"""`gridshare stack up|down|status|broker-config` and `gridshare migrate`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from gridshare.core import db, db_roles, stack
from gridshare.core.broker_auth import BrokerAuth
from gridshare.core.settings import get_settings
from gridshare.core.stack import cluster
from gridshare.core.stack.mosquitto import render_config
from gridshare.core.tls import CertificateAuthority

stack_app = typer.Typer(no_args_is_help=True, help="The local PostgreSQL, Mosquitto and Anvil.")
console = Console()


@stack_app.command("up")
def stack_up(
    nodes: int = typer.Option(
        None,
        "--cluster",
        min=0,
        max=9,
        help="Run an N-node clustered broker instead of Mosquitto (remembered; 0: Mosquitto)",
    ),
) -> None:
    """Start the local stack (a no-op for services already running) and migrate the schema."""
    settings = get_settings()
    if nodes is not None:
        cluster.record(settings, nodes)
    for name, started in stack.up(settings).items():
        console.print(f"{name}: {'started' if started else 'already running'}")
    applied = db.migrate(settings)
    console.print(f"schema: {len(applied)} migration(s) applied")


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started."""
    for name, was_running in stack.down(get_settings()).items():
        console.print(f"{name}: {'stopped' if was_running else 'not running'}")


@stack_app.command("status")
def stack_status() -> None:
    """One line per service."""
    table = Table(show_header=False, box=None)
    for name, state in stack.status(get_settings()).items():
        table.add_row(name, state)
    console.print(table)


@stack_app.command("broker-config")
def stack_broker_config(listen: str = "0.0.0.0:1883", device_listen: str = "0.0.0.0:8883") -> None:
    """Write the broker's config, password, ACL and TLS files into the state dir, for a
    broker run elsewhere (docker-compose mounts the state volume into the Mosquitto
    container). The server certificate names the host of GRIDSHARE_MQTT_DEVICE_URL."""
    settings = get_settings()
    auth = BrokerAuth(settings)
    auth.ensure_service_accounts()
    ca = CertificateAuthority(settings)
    ca.ensure()
    host, _, port = listen.rpartition(":")
    device_host, _, device_port = device_listen.rpartition(":")
    config = auth.dir / "mosquitto.conf"
    config.write_text(
        render_config(auth, ca, (host, int(port)), (device_host, int(device_port)), as_root=True)
    )
    console.print(f"broker config: {config}")


@stack_app.command("cluster-config")
def stack_cluster_config(nodes: int = typer.Option(3, min=1, max=9)) -> None:
    """Write a clustered broker's config and definitions into the state dir, for nodes run
    elsewhere (docker-compose's `scale` profile mounts the state volume into them)."""
    config = cluster.compose_config(get_settings(), nodes)
    console.print(f"cluster config: {config}")


def migrate(
    create_roles: bool = typer.Option(
        False,
        "--create-roles",
        help="First create the services' roles named by GRIDSHARE_*_DB_URL (needs CREATEROLE)",
    ),
) -> None:
    """Apply pending database migrations."""
    settings = get_settings()
    if create_roles:
        created = db_roles.create_service_roles(settings)
        console.print(f"roles: {', '.join(created) or 'none'} created")
    applied = db.migrate(settings)
    console.print(f"schema: {len(applied)} migration(s) applied")
