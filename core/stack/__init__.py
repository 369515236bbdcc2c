"""The local stack: PostgreSQL, Mosquitto (or a clustered broker) and Anvil as detached
processes under the state dir."""

from __future__ import annotations

from gridshare.core.settings import Settings
from gridshare.core.stack.anvil import Anvil
from gridshare.core.stack.cluster import Cluster, layout
from gridshare.core.stack.mosquitto import Mosquitto
from gridshare.core.stack.postgres import Postgres
from gridshare.core.stack.service import LocalService


def services(settings: Settings) -> list[LocalService | Cluster]:
    """The stack's services in start order (stop order is the reverse)."""
    found = layout(settings)
    broker = Cluster(settings, found) if found else Mosquitto(settings)
    return [Postgres(settings), broker, Anvil(settings)]


def up(settings: Settings) -> dict[str, bool]:
    """Start what is not running; {service: started_now}. A second call starts nothing."""
    return {service.name: service.up() for service in services(settings)}


def down(settings: Settings) -> dict[str, bool]:
    """Stop what `up` started; {service: was_running}."""
    return {service.name: service.down() for service in reversed(services(settings))}


def status(settings: Settings) -> dict[str, str]:
    states: dict[str, str] = {}
    for service in services(settings):
        found = service.status()
        states |= found if isinstance(found, dict) else {service.name: found}
    return states
