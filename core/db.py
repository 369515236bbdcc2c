"""Database access: connections with one-line failures, and the ordered schema migrations.

Migrations are `NNNN_name.sql` files applied once each, in order, under an advisory lock so
several workers starting together apply them exactly once. A migration may come in two
variants, `NNNN_name.timescale.sql` and `NNNN_name.postgres.sql`; the flavor is chosen once,
from whether the `timescaledb` extension is available, and recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from gridshare.core.errors import ServiceUnreachable
from gridshare.core.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x67726964  # "grid": one advisory lock id for schema changes
NO_TRANSACTION = "-- migrate:no-transaction"
# NOTIFY channel for changes to `devices` (provisioning, key rotation, revocation): payload a
# device id, or "*" for "reload everything". Ingest LISTENs on it.
DEVICES_CHANNEL = "gridshare_devices"
log = logging.getLogger(__name__)


class Flavor(StrEnum):
    """Which schema path the database runs: TimescaleDB or plain PostgreSQL."""

    TIMESCALE = "timescale"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def connect(settings: Settings, **kwargs: object) -> psycopg.Connection:
    """A connection to GRIDSHARE_DB_URL, or a one-line ServiceUnreachable."""
    try:
        return psycopg.connect(settings.db_url, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        raise ServiceUnreachable("database", "GRIDSHARE_DB_URL", settings.db_url, exc) from exc


def pool(settings: Settings, min_size: int = 1, max_size: int = 8) -> ConnectionPool:
    """A connection pool, opened and checked, or a one-line ServiceUnreachable."""
    connection_pool = ConnectionPool(
        settings.db_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"connect_timeout": 5},
    )
    try:
        connection_pool.open(wait=True, timeout=10)
    except psycopg.pool.PoolTimeout as exc:  # type: ignore[attr-defined]
        connection_pool.close()
        raise ServiceUnreachable("database", "GRIDSHARE_DB_URL", settings.db_url, exc) from exc
    return connection_pool


async def async_pool(
    settings: Settings, min_size: int = 2, max_size: int = 16, autocommit: bool = False
) -> AsyncConnectionPool:
    """An async connection pool (for the API), opened and checked. `autocommit` suits
    read-only request handlers: no BEGIN/COMMIT round trips around each query."""
    connection_pool = AsyncConnectionPool(
        settings.db_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"connect_timeout": 5, "autocommit": autocommit},
    )
    try:
        await connection_pool.open(wait=True, timeout=10)
    except psycopg.pool.PoolTimeout as exc:  # type: ignore[attr-defined]
        await connection_pool.close()
        raise ServiceUnreachable("database", "GRIDSHARE_DB_URL", settings.db_url, exc) from exc
    return connection_pool


def migrations(flavor: Flavor) -> list[Migration]:
    """The migrations for a flavor, in order: shared files plus that flavor's variants."""
    chosen: dict[int, Migration] = {}
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        stem_parts = path.name.removesuffix(".sql").split(".")
        variant = stem_parts[1] if len(stem_parts) > 1 else None
        if variant not in (None, flavor.value):
            continue
        version_text, _, name = stem_parts[0].partition("_")
        version = int(version_text)
        if version in chosen:
            raise RuntimeError(f"two migrations numbered {version}: {path.name}")
        chosen[version] = Migration(version, name, path)
    return [chosen[v] for v in sorted(chosen)]


def detect_flavor(conn: psycopg.Connection) -> Flavor:
    """TimescaleDB when the extension is installed or installable, else plain PostgreSQL."""
    row = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return Flavor.TIMESCALE if row and row[0] else Flavor.POSTGRES


def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    applied_now: list[str] = []
    with connect(settings, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, flavor text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            flavor = schema_flavor(conn) or detect_flavor(conn)
            if flavor is Flavor.TIMESCALE:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations(flavor):
                if migration.version in done:
                    continue
                _apply(conn, migration, flavor)
                applied_now.append(migration.path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def schema_flavor(conn: psycopg.Connection) -> Flavor | None:
    """The flavor the schema was created with, if any migration ran."""
    row = conn.execute("SELECT flavor FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    return Flavor(row[0]) if row else None


def _apply(conn: psycopg.Connection, migration: Migration, flavor: Flavor) -> None:
    """Run one migration in a transaction, or statement by statement when it is marked
    `-- migrate:no-transaction` (TimescaleDB continuous aggregates refuse transactions)."""
    sql = migration.path.read_text()
    log.info("applying migration", extra={"fields": {"migration": migration.path.name}})
    record = "INSERT INTO schema_migrations (version, name, flavor) VALUES (%s, %s, %s)"
    values = (migration.version, migration.name, flavor.value)
    if sql.startswith(NO_TRANSACTION):
        for statement in split_statements(sql):
            conn.execute(statement.encode(), prepare=False)
        conn.execute(record, values)
        return
    with conn.transaction():
        conn.execute(sql.encode(), prepare=False)
        conn.execute(record, values)


def split_statements(sql: str) -> list[str]:
    """Split our own migration files at semicolons that end a line (they hold no bodies)."""
    statements, current = [], []
    for line in sql.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    tail = "\n".join(current).strip()
    if tail and not all(x.strip().startswith("--") for x in tail.splitlines()):
        statements.append(tail)
    return statements
