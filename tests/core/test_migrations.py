"""Schema migrations: applied once, concurrency-safe, and the two flavors kept equivalent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from pglast import ast, parse_sql

from gridshare.core import db
from gridshare.core.db import Flavor
from gridshare.core.errors import ConfigError, MigrationError
from gridshare.core.settings import Settings
from gridshare.core.stack.postgres import timescaledb_installed

TIMESCALE_CALLS = {
    "create_hypertable",
    "add_compression_policy",
    "add_retention_policy",
    "add_continuous_aggregate_policy",
}


@pytest.fixture
def stack_flavor(conn: psycopg.Connection) -> Flavor:
    """The flavor the session stack's schema runs on."""
    flavor = db.schema_flavor(conn)
    assert flavor is not None
    return flavor


def test_applied_once(fresh_db: Settings, stack_flavor: Flavor) -> None:
    first = db.migrate(fresh_db)
    assert first == [m.path.name for m in db.migrations(stack_flavor)]
    assert db.migrate(fresh_db) == []
    with db.connect(fresh_db) as conn:
        rows = conn.execute("SELECT version, flavor FROM schema_migrations ORDER BY 1").fetchall()
        assert [r[0] for r in rows] == [m.version for m in db.migrations(stack_flavor)]
        assert {r[1] for r in rows} == {stack_flavor.value}


def test_concurrent_workers_apply_each_migration_once(
    fresh_db: Settings, stack_flavor: Flavor
) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: db.migrate(fresh_db), range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(m.path.name for m in db.migrations(stack_flavor))


def test_flavor_is_the_one_asked_for(stack_settings: Settings, stack_flavor: Flavor) -> None:
    if stack_settings.db_flavor == "postgres":
        assert stack_flavor is Flavor.POSTGRES
    else:
        assert stack_flavor in (Flavor.TIMESCALE, Flavor.TIMESCALE_APACHE)
    assert db.detect_flavor(stack_settings).hypertables == stack_flavor.hypertables


def test_installed_but_not_preloaded_falls_back_or_says_why(stack_settings: Settings) -> None:
    """The postgres-flavor stack runs without preloading TimescaleDB: auto takes plain
    PostgreSQL, a forced timescale flavor is one line naming the setting and the cause."""
    installed = timescaledb_installed(stack_settings.pg_bin_dir)
    if stack_settings.db_flavor != "postgres" or not installed:
        pytest.skip("needs TimescaleDB installed and a server that does not preload it")
    assert db.detect_flavor(stack_settings.model_copy(update={"db_flavor": "auto"})) is (
        Flavor.POSTGRES
    )
    with pytest.raises(ConfigError) as refused:
        db.detect_flavor(stack_settings.model_copy(update={"db_flavor": "timescale"}))
    message = str(refused.value)
    assert "\n" not in message
    assert "GRIDSHARE_DB_FLAVOR" in message and "preloaded" in message


def test_forced_flavor_must_match_the_schema(
    stack_settings: Settings, stack_flavor: Flavor
) -> None:
    other = "timescale" if stack_flavor is Flavor.POSTGRES else "postgres"
    with pytest.raises(ConfigError, match="GRIDSHARE_DB_FLAVOR"):
        db.migrate(stack_settings.model_copy(update={"db_flavor": other}))


def test_every_flavor_has_the_same_versions() -> None:
    versions = {flavor: [m.version for m in db.migrations(flavor)] for flavor in Flavor}
    assert len({tuple(v) for v in versions.values()}) == 1
    assert any(m.path.name.endswith(".timescale.sql") for m in db.migrations(Flavor.TIMESCALE))


def test_apache_edition_uses_no_licensed_feature() -> None:
    """TimescaleDB's Apache-2 edition: hypertables, but no policy or continuous aggregate."""
    calls, continuous = _timescale_features(Flavor.TIMESCALE_APACHE)
    assert "create_hypertable" in calls
    assert not calls & (TIMESCALE_CALLS - {"create_hypertable"})
    assert not continuous


@pytest.mark.parametrize("path", sorted(db.MIGRATIONS_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_every_migration_parses(path: Path) -> None:
    """PostgreSQL's own parser (libpg_query) accepts every statement, TimescaleDB's included."""
    assert parse_sql(path.read_text())


def test_timescale_path_uses_hypertable_aggregate_compression_retention() -> None:
    calls, continuous = _timescale_features(Flavor.TIMESCALE)
    assert calls >= TIMESCALE_CALLS
    assert continuous


def _timescale_features(flavor: Flavor) -> tuple[set[str], bool]:
    """Functions a flavor's migrations call in SELECTs, and whether one is a continuous
    aggregate."""
    calls: set[str] = set()
    continuous = False
    for migration in db.migrations(flavor):
        for raw in parse_sql(migration.path.read_text()):
            stmt = raw.stmt
            if isinstance(stmt, ast.SelectStmt) and stmt.targetList:
                for target in stmt.targetList:
                    if isinstance(target.val, ast.FuncCall):
                        calls.add(target.val.funcname[-1].sval)
            if isinstance(stmt, ast.CreateTableAsStmt):
                options = stmt.into.options or ()
                continuous |= any(o.defname == "continuous" for o in options)
    return calls, continuous


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
    assert _columns(Flavor.TIMESCALE_APACHE) == _columns(Flavor.POSTGRES)


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
        "revenue_minor_total, signed_bytes, sig) "
        "SELECT TIMESTAMPTZ '2026-01-01' + n * INTERVAL '5 minutes', "
        "'pv-migtest', n, 'generating', n * 10, n * 100, n * 3, '', '' "
        "FROM generate_series(0, 35) n ON CONFLICT DO NOTHING"
    )
    _refresh_hourly(conn, "2026-01-01", "2026-01-02")
    rows = conn.execute(
        "SELECT bucket, readings, energy_wh_first, energy_wh_last, revenue_minor_last "
        "FROM telemetry_hourly WHERE device_id = 'pv-migtest' ORDER BY bucket"
    ).fetchall()
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        (12, 0, 1100, 33),
        (12, 1200, 2300, 69),
        (12, 2400, 3500, 105),
    ]


def test_hourly_first_and_last_are_readings_in_time_then_seq_order(
    conn: psycopg.Connection,
) -> None:
    """A clock-skewed reading (higher seq, earlier device time) is the hour's first reading,
    with its own meters: not the smallest meter paired with the earliest time."""
    conn.execute(
        "INSERT INTO pools (name, pool_id, device_type, share_bps) "
        "VALUES ('mig-test-2', '0xmig2', 'pv_plant', 7000) ON CONFLICT DO NOTHING"
    )
    conn.execute(
        "INSERT INTO devices (device_id, type, pool, address) "
        "VALUES ('pv-migskew', 'pv_plant', 'mig-test-2', '0x0') ON CONFLICT DO NOTHING"
    )
    rows = [("10:05", 1, 100), ("10:01", 2, 200), ("10:50", 3, 300), ("10:50", 4, 400)]
    for clock, seq, energy in rows:
        conn.execute(
            "INSERT INTO telemetry (time, device_id, seq, status, energy_wh_total, "
            "revenue_minor_total, signed_bytes, sig) "
            "VALUES (%s, 'pv-migskew', %s, 'generating', %s, %s, '', '') "
            "ON CONFLICT DO NOTHING",
            (f"2026-02-01 {clock}:00+00", seq, energy, energy // 10),
        )
    _refresh_hourly(conn, "2026-02-01", "2026-02-02")
    row = conn.execute(
        "SELECT first_time, energy_wh_first, revenue_minor_first, last_time, energy_wh_last, "
        "revenue_minor_last FROM telemetry_hourly WHERE device_id = 'pv-migskew'"
    ).fetchone()
    assert row is not None
    assert (row[0].strftime("%H:%M"), row[1], row[2]) == ("10:01", 200, 20)
    assert (row[3].strftime("%H:%M"), row[4], row[5]) == ("10:50", 400, 40)


def _refresh_hourly(conn: psycopg.Connection, start: str, end: str) -> None:
    """On the full edition, materialize the hours just written, as the refresh policy would:
    once a refresh (another suite's, run earlier in the session) has moved the aggregate's
    watermark past them, real-time aggregation no longer covers them."""
    if db.schema_flavor(conn) is Flavor.TIMESCALE:
        conn.execute(
            "CALL refresh_continuous_aggregate('telemetry_hourly', %s::timestamptz,"
            " %s::timestamptz)",
            (start, end),
        )


def test_a_statement_that_lost_a_race_with_a_job_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh full-edition database runs 0004's refresh policy while 0041 drops it."""
    monkeypatch.setattr(db.time, "sleep", lambda _: None)

    class Conn:
        def __init__(self, failures: list[Exception]) -> None:
            self.failures, self.calls = failures, 0

        def execute(self, *args: object, **kwargs: object) -> None:
            self.calls += 1
            if self.failures:
                raise self.failures.pop(0)

    raced = Conn([psycopg.errors.InternalError_("tuple concurrently deleted")])
    db._execute_racing_jobs(raced, "DROP MATERIALIZED VIEW telemetry_hourly;")  # type: ignore[arg-type]
    assert raced.calls == 2
    broken = Conn([psycopg.errors.InternalError_("something else")])
    with pytest.raises(psycopg.errors.InternalError_):
        db._execute_racing_jobs(broken, "SELECT 1;")  # type: ignore[arg-type]
    assert broken.calls == 1


def test_applied_migrations_match_their_files(fresh_db: Settings, stack_flavor: Flavor) -> None:
    """Each applied migration's checksum is recorded; a file edited afterwards stops the next
    migrate with one line naming it."""
    db.migrate(fresh_db)
    expected = {m.version: db.checksum(m) for m in db.migrations(stack_flavor)}
    with db.connect(fresh_db, autocommit=True) as conn:
        recorded = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        assert recorded == expected
        first = min(recorded)
        conn.execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = %s", (first,)
        )
    with pytest.raises(MigrationError, match="was edited after this database applied it"):
        db.migrate(fresh_db)


def test_the_reader_role_reads_and_cannot_write(stack_settings: Settings) -> None:
    """The local stack creates `gridshare_reader`; the migrations grant it SELECT only, so an
    oracle signer or a BI tool given its URL reads everything and changes nothing."""
    if stack_settings.db_external:
        pytest.skip("the database is external: its owner manages roles")
    reader = stack_settings.service_db_url("oracle_signer")
    assert urlsplit(reader).username == "gridshare_reader"
    with psycopg.connect(reader, autocommit=True) as conn:
        for table in ("telemetry", "devices", "oracle_leaves", "telemetry_hourly"):
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM devices")
