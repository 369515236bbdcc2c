"""One database role per service: each may do what its service needs and nothing else, and
services refuse to start on a schema that is not current instead of migrating it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from gridshare.core import db, db_roles
from gridshare.core.errors import ConfigError, MigrationError
from gridshare.core.settings import Service, Settings
from tests.support import admin_url

GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))
WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
# What each service writes; everything else it may only read.
EXPECTED_WRITES: dict[Service, set[tuple[str, str]]] = {
    "ingest": {
        ("telemetry", "INSERT"),
        ("device_flags", "INSERT"),
        ("device_state", "INSERT"),
        ("device_state", "UPDATE"),
        ("quarantine", "INSERT"),
        ("quarantine", "DELETE"),
        ("devices", "UPDATE"),  # active and updated_at only
    },
    "oracle": {
        *(
            (table, right)
            for table in ("oracle_pools", "oracle_epochs", "oracle_leaves", "oracle_signatures")
            for right in ("INSERT", "UPDATE", "DELETE")
        ),
        ("pools", "UPDATE"),  # currency_exponent and coin_decimals only
    },
    "api": set(),
    "oracle_signer": set(),
    "bridge": {
        ("bridge_state", "INSERT"),
        ("bridge_state", "UPDATE"),
        ("reading_evidence", "INSERT"),
    },
}


@pytest.fixture
def local_roles(stack_settings: Settings) -> Settings:
    if stack_settings.db_external:
        pytest.skip("the database is external: its owner manages roles")
    return stack_settings


def writes_of(conn: psycopg.Connection, role: str) -> set[tuple[str, str]]:
    """(relation, right) for every write right `role` holds on any table or view, at table
    or column level, in any schema but the system's and TimescaleDB's (whose chunks have
    their hypertable's rights: see `test_rights_hold_on_real_statements`)."""
    rows = conn.execute(
        """SELECT CASE WHEN n.nspname = 'public' THEN c.relname
                       ELSE n.nspname || '.' || c.relname END, w.priv
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN unnest(%s::text[]) AS w(priv)
           WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
             AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE '\\_timescaledb\\_%%'
             AND n.nspname NOT LIKE 'timescaledb\\_%%'
             AND (has_table_privilege(%s, c.oid, w.priv)
                  OR (w.priv IN ('INSERT', 'UPDATE')
                      AND has_any_column_privilege(%s, c.oid, w.priv)))""",
        (list(WRITES), role, role),
    ).fetchall()
    return {(table, right) for table, right in rows}


@pytest.mark.parametrize("service", sorted(EXPECTED_WRITES))
def test_each_role_writes_only_what_its_service_writes(
    local_roles: Settings, conn: psycopg.Connection, service: Service
) -> None:
    role = urlsplit(local_roles.service_db_url(service)).username
    assert role and role != urlsplit(local_roles.db_url).username
    assert writes_of(conn, role) == EXPECTED_WRITES[service]
    readable = conn.execute(
        "SELECT bool_and(has_table_privilege(%s, c.oid, 'SELECT')) FROM pg_class c"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'm')",
        (role,),
    ).fetchone()
    assert readable == (True,)


def _telemetry_row(device_id: str, year: int) -> tuple[object, ...]:
    return (f"{year}-01-01T00:00:00Z", device_id, 1, "idle", 0, 0, b"{}", b"\x00" * 65)


INSERT_TELEMETRY = (
    "INSERT INTO telemetry (time, device_id, seq, status, energy_wh_total,"
    " revenue_minor_total, signed_bytes, sig) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def test_rights_hold_on_real_statements(local_roles: Settings, conn: psycopg.Connection) -> None:
    """Ingest stores a reading in a chunk of its own making (a new hypertable chunk on
    TimescaleDB gets the hypertable's grants), the readers read it, and no role writes what
    is not its service's."""
    device_id = f"pv-roles-{uuid.uuid4().hex[:8]}"
    ingest = local_roles.service_db_url("ingest")
    try:
        with psycopg.connect(ingest, autocommit=True) as as_ingest:
            as_ingest.execute(INSERT_TELEMETRY, _telemetry_row(device_id, 2091))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                as_ingest.execute("DELETE FROM oracle_epochs")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                as_ingest.execute("UPDATE devices SET address = address")
        for service in ("api", "oracle_signer", "oracle"):
            with psycopg.connect(local_roles.service_db_url(service), autocommit=True) as other:
                count = other.execute(
                    "SELECT count(*) FROM telemetry WHERE device_id = %s", (device_id,)
                ).fetchone()
                assert count == (1,), service
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    other.execute(INSERT_TELEMETRY, _telemetry_row(device_id, 2092))
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    other.execute("DELETE FROM telemetry WHERE device_id = %s", (device_id,))
        with (
            psycopg.connect(local_roles.service_db_url("api"), autocommit=True) as reader,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            reader.execute("DELETE FROM oracle_epochs")
        assert _chunks_without_their_hypertables_rights(conn) == []
    finally:
        conn.execute("DELETE FROM telemetry WHERE device_id = %s", (device_id,))


def _chunks_without_their_hypertables_rights(conn: psycopg.Connection) -> list[tuple]:
    """(chunk, role, right) where a role's right on a chunk differs from its hypertable's."""
    if db.schema_flavor(conn) is db.Flavor.POSTGRES:
        return []
    chunks = conn.execute(
        "SELECT format('%I.%I', chunk_schema, chunk_name), hypertable_name"
        " FROM timescaledb_information.chunks"
    ).fetchall()
    assert chunks
    roles = ("gridshare_ingest", "gridshare_oracle", "gridshare_reader", "gridshare_bridge")
    return [
        (chunk, role, right)
        for chunk, hypertable in chunks
        for role in roles
        for right in ("SELECT", *WRITES)
        if conn.execute(
            "SELECT has_table_privilege(%s, %s::regclass, %s)"
            " <> has_table_privilege(%s, %s::regclass, %s)",
            (role, chunk, right, role, hypertable, right),
        ).fetchone()
        != (False,)
    ]


def _start(command: list[str], settings: Settings, stack_env: dict[str, str]) -> list[str]:
    """Run a service command that must refuse to start; the lines of what it printed."""
    env = {**stack_env, **settings.as_env()}
    result = subprocess.run(
        [GRIDSHARE, *command], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stderr.strip().splitlines()


def test_services_stop_on_an_unmigrated_database(
    fresh_db: Settings, stack_env: dict[str, str]
) -> None:
    """Ingest on an empty database, the API on one a migration short: one line each naming
    `gridshare migrate`, and neither changed the schema."""
    lines = _start(["ingest", "--worker", "unmigrated"], fresh_db, stack_env)
    assert len(lines) == 1 and "gridshare migrate" in lines[0]
    db.migrate(fresh_db)
    with db.connect(fresh_db, autocommit=True) as owner:
        owner.execute("DELETE FROM schema_migrations WHERE version = 47")
    lines = _start(["api"], fresh_db, stack_env)
    assert len(lines) == 1 and "gridshare migrate" in lines[0] and "0047" in lines[0]
    with db.connect(fresh_db, autocommit=True) as owner:
        versions = owner.execute("SELECT version FROM schema_migrations").fetchall()
        assert (47,) not in versions


def test_service_urls_default_to_the_stack_roles_or_the_database_url() -> None:
    local = Settings(db_url="postgresql://gridshare@127.0.0.1:5999/grid")
    assert local.service_db_url("ingest") == "postgresql://gridshare_ingest@127.0.0.1:5999/grid"
    assert local.for_service("api").db_url == "postgresql://gridshare_reader@127.0.0.1:5999/grid"
    own = local.model_copy(update={"oracle_db_url": "postgresql://o:pw@db/grid"})
    assert own.service_db_url("oracle") == "postgresql://o:pw@db/grid"
    external = local.model_copy(update={"db_external": True})
    assert external.service_db_url("oracle_signer") == external.db_url


def test_migrate_creates_the_roles_the_service_urls_name(
    local_roles: Settings, fresh_db: Settings
) -> None:
    """`gridshare migrate --create-roles` (docker-compose's init): each role named by a
    service URL gets that URL's password; a role the grants do not know is refused, and a
    migrating role without CREATEROLE is told so in one line."""
    host = urlsplit(fresh_db.db_url).netloc.rpartition("@")[2]
    path = urlsplit(fresh_db.db_url).path
    urls = {
        "ingest_db_url": f"postgresql://gridshare_ingest:in%40pw@{host}{path}",
        "api_db_url": f"postgresql://gridshare_reader:rd@{host}{path}",
        "oracle_signer_db_url": f"postgresql://gridshare_reader:rd@{host}{path}",
    }
    assert db_roles.wanted_roles(fresh_db.model_copy(update=urls)) == {
        "gridshare_ingest": "in@pw",
        "gridshare_reader": "rd",
    }
    with pytest.raises(ConfigError, match="GRIDSHARE_ORACLE_DB_URL names role 'someone'"):
        db_roles.wanted_roles(
            fresh_db.model_copy(update={"oracle_db_url": f"postgresql://someone@{host}{path}"})
        )
    with pytest.raises(MigrationError, match="may not create roles") as refused:
        db_roles.create_service_roles(fresh_db.model_copy(update=urls))
    assert "\n" not in str(refused.value)
    admin = fresh_db.model_copy(update={**urls, "db_url": admin_url(fresh_db)})
    try:
        assert db_roles.create_service_roles(admin) == []  # the stack made them already
        with psycopg.connect(admin_url(fresh_db), autocommit=True) as conn:
            with_password = conn.execute(
                "SELECT rolname FROM pg_authid WHERE rolpassword IS NOT NULL"
                " AND rolname LIKE 'gridshare\\_%%' ORDER BY 1"
            ).fetchall()
        assert with_password == [("gridshare_ingest",), ("gridshare_reader",)]
    finally:
        with psycopg.connect(admin_url(fresh_db), autocommit=True) as conn:
            for role in ("gridshare_ingest", "gridshare_reader"):
                conn.execute(f"ALTER ROLE {role} PASSWORD NULL")
