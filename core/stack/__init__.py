"""The local stack: PostgreSQL, Mosquitto and Anvil as detached processes under the state dir."""

from __future__ import annotations

from gridshare.core import db
from gridshare.core.errors import GridshareError
from gridshare.core.settings import Settings
from gridshare.core.stack.anvil import Anvil
from gridshare.core.stack.mosquitto import Mosquitto
from gridshare.core.stack.postgres import Postgres
from gridshare.core.stack.service import LocalService


def services(settings: Settings) -> list[LocalService]:
    """The stack's services in start order (stop order is the reverse). An external database
    (GRIDSHARE_DB_EXTERNAL) belongs to its owner: the stack neither starts nor stops it."""
    database: list[LocalService] = [] if settings.db_external else [Postgres(settings)]
    return [*database, Mosquitto(settings), Anvil(settings)]


def up(settings: Settings) -> dict[str, bool]:
    """Start what is not running; {service: started_now}. A second call starts nothing."""
    return {service.name: service.up() for service in services(settings)}


def down(settings: Settings) -> dict[str, bool]:
    """Stop what `up` started; {service: was_running}."""
    return {service.name: service.down() for service in reversed(services(settings))}


def status(settings: Settings) -> dict[str, str]:
    """One line per service, then the database schema's flavor and edition."""
    lines = {service.name: service.status() for service in services(settings)}
    if settings.db_external:
        lines = {"postgres": "external (not managed by the stack)", **lines}
    lines["schema"] = _schema_state(settings)
    return lines


def _schema_state(settings: Settings) -> str:
    try:
        with db.connect(settings) as conn:
            flavor = db.schema_flavor(conn)
    except GridshareError as exc:
        return f"unknown ({exc})"
    return flavor.label if flavor else "not migrated"
