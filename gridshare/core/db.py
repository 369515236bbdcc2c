"""Database access: connections with one-line failures, and the ordered schema migrations.

Migrations are `NNNN_name.sql` files applied once each, in order, under an advisory lock so
several workers starting together apply them exactly once. A migration may come in variants
per flavor: `NNNN_name.postgres.sql`, `NNNN_name.timescale.sql` (TimescaleDB with its full
edition: continuous aggregates, compression, policies) and `NNNN_name.timescale-apache.sql`
(TimescaleDB's Apache-2 edition: hypertables and `time_bucket` only; where it has no variant
of its own it takes the plain-PostgreSQL one, since what the full edition's variants use
(continuous aggregates, compression, policies) is what it lacks). The flavor is chosen once,
by what works: TimescaleDB only when the extension can actually be created (it must be
preloaded by the server), unless GRIDSHARE_DB_FLAVOR forces a choice; each applied migration
records the flavor it ran with.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from gridshare.core.errors import ConfigError, MigrationError, ServiceUnreachable
from gridshare.core.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x67726964  # "grid": one advisory lock id for schema changes
NO_TRANSACTION = "-- migrate:no-transaction"
# NOTIFY channel for changes to `devices` (provisioning, key rotation, revocation): payload a
# device id, or "*" for "reload everything". Ingest LISTENs on it.
DEVICES_CHANNEL = "gridshare_devices"
log = logging.getLogger(__name__)


class Flavor(StrEnum):
    """Which schema path the database runs: TimescaleDB (full or Apache-only) or PostgreSQL."""

    TIMESCALE = "timescale"
    TIMESCALE_APACHE = "timescale-apache"
    POSTGRES = "postgres"

    @property
    def hypertables(self) -> bool:
        """Whether telemetry is a hypertable (its unique index must then include `time`)."""
        return self is not Flavor.POSTGRES

    @property
    def variants(self) -> tuple[str, ...]:
        """Migration file variants this flavor takes, most specific first."""
        if self is Flavor.TIMESCALE_APACHE:
            return (self.value, Flavor.POSTGRES.value)
        return (self.value,)

    @property
    def label(self) -> str:
        """What /health and `stack status` show."""
        return {
            Flavor.TIMESCALE: "timescaledb (full edition)",
            Flavor.TIMESCALE_APACHE: "timescaledb (apache-only edition)",
            Flavor.POSTGRES: "postgresql",
        }[self]


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
    candidates: dict[int, dict[str | None, Migration]] = {}
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        stem_parts = path.name.removesuffix(".sql").split(".")
        variant = stem_parts[1] if len(stem_parts) > 1 else None
        version_text, _, name = stem_parts[0].partition("_")
        by_variant = candidates.setdefault(int(version_text), {})
        if variant in by_variant:
            raise RuntimeError(f"two migrations numbered {version_text}: {path.name}")
        by_variant[variant] = Migration(int(version_text), name, path)
    chosen: list[Migration] = []
    for version in sorted(candidates):
        by_variant = candidates[version]
        if None in by_variant:
            if len(by_variant) > 1:
                raise RuntimeError(f"migration {version} is both shared and per flavor")
            chosen.append(by_variant[None])
            continue
        variant = next((v for v in flavor.variants if v in by_variant), None)
        if variant is None:
            raise RuntimeError(f"migration {version} has no variant for {flavor.value}")
        chosen.append(by_variant[variant])
    return chosen


def detect_flavor(settings: Settings) -> Flavor:
    """The flavor GRIDSHARE_DB_FLAVOR asks for, or (auto) TimescaleDB when the extension can
    really be created in this database, else PostgreSQL. Probed on a connection of its own:
    a server that has the extension installed but not preloaded ends the session."""
    if settings.db_flavor == "postgres":
        return Flavor.POSTGRES
    problem, flavor = _probe_timescale(settings)
    if flavor is not None:
        return flavor
    if settings.db_flavor == "timescale":
        raise ConfigError("GRIDSHARE_DB_FLAVOR", f"is timescale but {problem}")
    log.info("plain postgresql schema", extra={"fields": {"timescaledb": problem}})
    return Flavor.POSTGRES


def _probe_timescale(settings: Settings) -> tuple[str, Flavor | None]:
    """('', flavor) when `CREATE EXTENSION timescaledb` works, else (why not, None)."""
    with connect(settings, autocommit=True) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        if not available:
            return "the timescaledb extension is not installed on the database server", None
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
        except psycopg.Error as exc:
            return f"timescaledb cannot be created ({_first_line(exc)})", None
    full = bool(row and row[0] == "timescale")
    return "", Flavor.TIMESCALE if full else Flavor.TIMESCALE_APACHE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
            conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
            flavor = schema_flavor(conn) or detect_flavor(settings)
            _check_forced(settings, flavor)
            done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for migration in migrations(flavor):
                if migration.version in done:
                    _check_unchanged(migration, done[migration.version])
                    continue
                _apply(conn, migration, flavor)
                applied_now.append(migration.path.name)
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def require_current(settings: Settings) -> None:
    """Stop with one line unless every migration file is applied, unedited. Services check
    this instead of migrating: their roles may not change the schema, and a schema change is
    the operator's step (`gridshare migrate`), not a side effect of starting a worker."""
    with connect(settings) as conn:
        try:
            flavor = schema_flavor(conn)
            if flavor is None:
                raise MigrationError("the database has no schema yet; run `gridshare migrate`")
            rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise MigrationError(
                f"role {conn.info.user} may not read the schema; grant it its rights"
                " (docs/database.md, Roles), then run `gridshare migrate`"
            ) from exc
    done = dict(rows)
    expected = migrations(flavor)
    for migration in expected:
        if migration.version in done:
            _check_unchanged(migration, done[migration.version])
    pending = [m.path.name for m in expected if m.version not in done]
    if pending:
        raise MigrationError(
            f"the database schema is not current ({len(pending)} migration(s) pending, first"
            f" {pending[0]}); run `gridshare migrate`"
        )


def checksum(migration: Migration) -> str:
    """SHA-256 of a migration file: recorded when applied, compared on every later run."""
    return hashlib.sha256(migration.path.read_bytes()).hexdigest()


def _check_unchanged(migration: Migration, recorded: str | None) -> None:
    """A migration is never edited once applied: a changed file means this database and a
    fresh one would differ. (Rows from before checksums were recorded hold none.)"""
    if recorded is not None and recorded != checksum(migration):
        raise MigrationError(
            f"migration {migration.path.name} was edited after this database applied it; "
            "restore the file and put the change in a new migration"
        )


def _check_forced(settings: Settings, flavor: Flavor) -> None:
    """A forced flavor that contradicts the schema already there is a configuration error."""
    if settings.db_flavor == "postgres" and flavor.hypertables:
        raise ConfigError("GRIDSHARE_DB_FLAVOR", "is postgres but the schema is on timescaledb")
    if settings.db_flavor == "timescale" and not flavor.hypertables:
        raise ConfigError("GRIDSHARE_DB_FLAVOR", "is timescale but the schema is plain postgres")


def schema_flavor(conn: psycopg.Connection) -> Flavor | None:
    """The flavor the schema was created with, if any migration ran."""
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if not exists or exists[0] is None:
        return None
    row = conn.execute("SELECT flavor FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    return Flavor(row[0]) if row else None


def _apply(conn: psycopg.Connection, migration: Migration, flavor: Flavor) -> None:
    """Run one migration in a transaction, or statement by statement when it is marked
    `-- migrate:no-transaction` (TimescaleDB continuous aggregates refuse transactions)."""
    sql = migration.path.read_text()
    log.info("applying migration", extra={"fields": {"migration": migration.path.name}})
    record = (
        "INSERT INTO schema_migrations (version, name, flavor, checksum) VALUES (%s, %s, %s, %s)"
    )
    values = (migration.version, migration.name, flavor.value, checksum(migration))
    try:
        if sql.startswith(NO_TRANSACTION):
            for statement in split_statements(sql):
                _execute_racing_jobs(conn, statement)
            conn.execute(record, values)
            return
        with conn.transaction():
            conn.execute(sql.encode(), prepare=False)
            conn.execute(record, values)
    except psycopg.Error as exc:
        raise MigrationError(f"migration {migration.path.name} failed: {_first_line(exc)}") from exc


def _execute_racing_jobs(conn: psycopg.Connection, statement: str, tries: int = 5) -> None:
    """One autocommitted statement, tried again when it lost a race with a TimescaleDB
    background job: dropping a continuous aggregate (or its policy) while the scheduler runs
    that policy, as it does right after a fresh database's earlier migration created it, can
    fail with "tuple concurrently deleted/updated". The failed statement changed nothing."""
    for attempt in range(tries):
        try:
            conn.execute(statement.encode(), prepare=False)
            return
        except psycopg.errors.InternalError_ as exc:
            if "tuple concurrently" not in str(exc) or attempt == tries - 1:
                raise
            log.info("retrying a statement", extra={"fields": {"error": _first_line(exc)}})
            time.sleep(0.5 * (attempt + 1))


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
