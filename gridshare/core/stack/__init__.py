"""The local stack: PostgreSQL, Mosquitto (or a clustered broker) and Anvil as detached
processes under the state dir."""

from __future__ import annotations

import os

from gridshare.core import db
from gridshare.core.errors import GridshareError
from gridshare.core.files import private_dir
from gridshare.core.settings import Settings
from gridshare.core.stack.anvil import Anvil
from gridshare.core.stack.cluster import Cluster, layout
from gridshare.core.stack.mosquitto import Mosquitto
from gridshare.core.stack.postgres import Postgres
from gridshare.core.stack.service import LocalService


def services(settings: Settings) -> list[LocalService | Cluster]:
    """The stack's services in start order (stop order is the reverse). An external database
    (GRIDSHARE_DB_EXTERNAL) belongs to its owner: the stack neither starts nor stops it.
    The broker is Mosquitto, or the clustered broker (`stack up --cluster N`)."""
    database: list[LocalService | Cluster] = [] if settings.db_external else [Postgres(settings)]
    found = layout(settings)
    broker = Cluster(settings, found) if found else Mosquitto(settings)
    return [*database, broker, Anvil(settings)]


def up(settings: Settings) -> dict[str, bool]:
    """Start what is not running; {service: started_now}. A second call starts nothing.

    The state dir holds keys and passwords: only its owner may list it (0700; as root,
    others may pass through to the directories of the services run as their own users)."""
    private_dir(settings.state_path, 0o711 if os.geteuid() == 0 else 0o700)
    return {service.name: service.up() for service in services(settings)}


def down(settings: Settings) -> dict[str, bool]:
    """Stop what `up` started; {service: was_running}."""
    return {service.name: service.down() for service in reversed(services(settings))}


def status(settings: Settings) -> dict[str, str]:
    """One line per service (per node of a clustered broker), then the database schema's
    flavor and edition."""
    lines: dict[str, str] = {}
    for service in services(settings):
        found = service.status()
        lines |= found if isinstance(found, dict) else {service.name: found}
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
