"""Schema migrations: applied once, concurrency-safe, and the two flavors kept equivalent."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from pglast import ast, parse_sql

from gridshare.core import db
from gridshare.core.db import Flavor
from gridshare.core.settings import Settings

TIMESCALE_CALLS = {
    "create_hypertable",
    "add_compression_policy",
    "add_retention_policy",
    "add_continuous_aggregate_policy",
}


@pytest.fixture
def fresh_db(stack_settings: Settings):
    """A new empty database on the session stack, dropped afterwards."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://postgres@127.0.0.1:{stack_settings.db_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER gridshare')
    yield stack_settings.model_copy(
        update={"db_url": f"postgresql://gridshare@127.0.0.1:{stack_settings.db_port}/{name}"}
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_applied_once(fresh_db: Settings) -> None:
    first = db.migrate(fresh_db)
    assert first == [m.path.name for m in db.migrations(Flavor.POSTGRES)]
    assert db.migrate(fresh_db) == []
    with db.connect(fresh_db) as conn:
        rows = conn.execute("SELECT version, flavor FROM schema_migrations ORDER BY 1").fetchall()
        assert [r[0] for r in rows] == [m.version for m in db.migrations(Flavor.POSTGRES)]
        assert {r[1] for r in rows} == {"postgres"}


def test_concurrent_workers_apply_each_migration_once(fresh_db: Settings) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: db.migrate(fresh_db), range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(m.path.name for m in db.migrations(Flavor.POSTGRES))


def test_flavor_detected_on_plain_postgres(conn: psycopg.Connection) -> None:
    assert db.detect_flavor(conn) is Flavor.POSTGRES
    assert db.schema_flavor(conn) is Flavor.POSTGRES


def test_both_flavors_have_the_same_versions() -> None:
    timescale = db.migrations(Flavor.TIMESCALE)
    postgres = db.migrations(Flavor.POSTGRES)
    assert [m.version for m in timescale] == [m.version for m in postgres]
    assert any(m.path.name.endswith(".timescale.sql") for m in timescale)


@pytest.mark.parametrize("path", sorted(db.MIGRATIONS_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_every_migration_parses(path: Path) -> None:
    """PostgreSQL's own parser (libpg_query) accepts every statement, TimescaleDB's included."""
    assert parse_sql(path.read_text())


def test_timescale_path_uses_hypertable_aggregate_compression_retention() -> None:
    calls = set()
    continuous = False
    for migration in db.migrations(Flavor.TIMESCALE):
        for raw in parse_sql(migration.path.read_text()):
            stmt = raw.stmt
            if isinstance(stmt, ast.SelectStmt) and stmt.targetList:
                for target in stmt.targetList:
                    if isinstance(target.val, ast.FuncCall):
                        calls.add(target.val.funcname[-1].sval)
            if isinstance(stmt, ast.CreateTableAsStmt):
                options = stmt.into.options or ()
                continuous |= any(o.defname == "continuous" for o in options)
    assert calls >= TIMESCALE_CALLS
    assert continuous


def _columns(flavor: Flavor) -> dict[str, list[tuple[str, str]]]:
    """{table or view: [(column, type)]} declared by a flavor's migrations."""
    found: dict[str, list[tuple[str, str]]] = {}
    for migration in db.migrations(flavor):
        for raw in parse_sql(migration.path.read_text()):
            stmt = raw.stmt
            if isinstance(stmt, ast.CreateStmt):
                found[stmt.relation.relname] = [
                    (c.colname, ".".join(n.sval for n in c.typeName.names))
                    for c in stmt.tableElts
                    if isinstance(c, ast.ColumnDef)
                ]
            query = getattr(stmt, "query", None)
            if isinstance(stmt, ast.ViewStmt | ast.CreateTableAsStmt):
                name = (
                    stmt.view.relname if isinstance(stmt, ast.ViewStmt) else stmt.into.rel.relname
                )
                found[name] = [(t.name, "") for t in query.targetList]
    return found


def test_flavors_declare_identical_tables_and_views() -> None:
    assert _columns(Flavor.TIMESCALE) == _columns(Flavor.POSTGRES)


def test_hourly_view_matches_direct_computation(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO pools (name, pool_id, device_type, share_bps) "
        "VALUES ('mig-test-1', '0xmig', 'pv_plant', 7000) ON CONFLICT DO NOTHING"
    )
    conn.execute(
        "INSERT INTO devices (device_id, type, pool, address) "
        "VALUES ('pv-migtest', 'pv_plant', 'mig-test-1', '0x0') ON CONFLICT DO NOTHING"
    )
    conn.execute(
        "INSERT INTO telemetry (time, device_id, seq, status, power_w, energy_wh_total, "
        "revenue_minor_total) SELECT TIMESTAMPTZ '2026-01-01' + n * INTERVAL '5 minutes', "
        "'pv-migtest', n, 'generating', n * 10, n * 100, n * 3 FROM generate_series(0, 35) n "
        "ON CONFLICT DO NOTHING"
    )
    rows = conn.execute(
        "SELECT bucket, readings, energy_wh_first, energy_wh_last, revenue_minor_last "
        "FROM telemetry_hourly WHERE device_id = 'pv-migtest' ORDER BY bucket"
    ).fetchall()
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        (12, 0, 1100, 33),
        (12, 1200, 2300, 69),
        (12, 2400, 3500, 105),
    ]
