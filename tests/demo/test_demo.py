"""`gridshare demo` end to end, on an external database (GRIDSHARE_DB_EXTERNAL): the stack
runs only the broker and the chain, the demo migrates the database it is given, its ingest,
oracle and API run as their own roles there, every pool gets attested epochs, and stopping
the demo leaves that database running."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from gridshare.core import stack
from gridshare.core.errors import GridshareError
from gridshare.core.settings import Settings
from gridshare.demo import DemoPlan, run
from tests.support import admin_url, database_url, stack_settings_for

pytestmark = pytest.mark.slow


@pytest.fixture
def external(stack_settings: Settings, tmp_path: Path):
    """Settings for a demo whose database lives on the session stack's server, with the
    services' URLs naming the roles that server's stack created."""
    name = f"demo_{uuid.uuid4().hex[:8]}"
    admin = admin_url(stack_settings)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{urlsplit(stack_settings.db_url).username}"')
    local = stack_settings.model_copy(update={"db_url": database_url(stack_settings, name)})
    roles: dict[str, object] = {
        f"{service}_db_url": local.service_db_url(service)
        for service in ("ingest", "oracle", "api", "oracle_signer")
    }
    settings = stack_settings_for(tmp_path / "state").model_copy(
        update={"db_url": local.db_url, "db_external": True, **roles}
    )
    yield settings
    stack.down(settings)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_demo_on_an_external_database(external: Settings) -> None:
    plan = DemoPlan(pools=3, per_pool=2, days=2, wall_seconds=20.0)
    run(external, plan, once=True, fresh=True)
    with psycopg.connect(external.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] >= 6 * 2 * 96
        epochs = dict(
            conn.execute(
                "SELECT pool, count(*) FROM oracle_epochs WHERE state = 'confirmed' GROUP BY pool"
            ).fetchall()
        )
    assert len(epochs) == 3 and min(epochs.values()) >= 2, epochs
    assert all(
        line == "stopped"
        for name, line in stack.status(external).items()
        if name in ("mosquitto", "anvil")
    )
    # a second run resumes: the fleet's clocks stand at the present, so nothing is simulated
    # (ingest would refuse readings from the future) and nothing already stored changes
    run(external, plan, once=True, fresh=False)
    with psycopg.connect(external.db_url) as conn:
        quarantined = conn.execute(
            "SELECT count(*) FROM quarantine WHERE reason = 'bad_timestamp'"
        ).fetchone()[0]
    assert quarantined == 0
    with pytest.raises(GridshareError, match="already holds a gridshare schema"):
        run(external, plan, once=True, fresh=True)
