"""The local stack: PostgreSQL, Mosquitto and Anvil as detached processes under the state dir."""

from __future__ import annotations

from gridshare.core.settings import Settings
from gridshare.core.stack.anvil import Anvil
from gridshare.core.stack.mosquitto import Mosquitto
from gridshare.core.stack.postgres import Postgres
from gridshare.core.stack.service import LocalService


def services(settings: Settings) -> list[LocalService]:
    """The stack's services in start order (stop order is the reverse)."""
    return [Postgres(settings), Mosquitto(settings), Anvil(settings)]


def up(settings: Settings) -> dict[str, bool]:
    """Start what is not running; {service: started_now}. A second call starts nothing."""
    return {service.name: service.up() for service in services(settings)}


def down(settings: Settings) -> dict[str, bool]:
    """Stop what `up` started; {service: was_running}."""
    return {service.name: service.down() for service in reversed(services(settings))}


def status(settings: Settings) -> dict[str, str]:
    return {service.name: service.status() for service in services(settings)}
