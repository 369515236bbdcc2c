"""Session fixtures: one private local stack (real PostgreSQL, Mosquitto, Anvil) per test run.

The stack is started with the same code as `gridshare stack up`, on free ports in a temporary
state dir, so test runs never touch a developer's stack and may run side by side. The storage,
ingest, oracle and API suites run once per database flavor (`tests.support.FLAVOR_SUITES`):
their tests are parametrized `[postgres]` and `[timescale]`, one stack per flavor at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gridshare.core import db
from gridshare.core.settings import Settings
from tests.support import running_stack, stack_flavors

TESTS = Path(__file__).parent


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the stack gets the flavors of its suite (see `stack_flavors`)."""
    if "stack_settings" in metafunc.fixturenames:
        suite = Path(metafunc.definition.path).relative_to(TESTS).parts[0]
        metafunc.parametrize("stack_settings", stack_flavors(suite), indirect=True)


@pytest.fixture(scope="session")
def stack_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A running, migrated local stack for the whole test session, per flavor."""
    flavor = request.param
    with running_stack(tmp_path_factory.mktemp(f"stack-{flavor}") / "state", flavor) as settings:
        yield settings


@pytest.fixture
def full_timescaledb(conn: psycopg.Connection) -> None:
    """Skips (with the reason) unless the stack runs TimescaleDB's full edition."""
    flavor = db.schema_flavor(conn)
    if flavor is not db.Flavor.TIMESCALE:
        pytest.skip(f"needs TimescaleDB's full edition; this stack's schema is {flavor}")


@pytest.fixture(scope="session")
def stack_env(stack_settings: Settings) -> dict[str, str]:
    """os.environ plus the stack's GRIDSHARE_* variables, for subprocesses."""
    return {**os.environ, **stack_settings.as_env()}


@pytest.fixture
def conn(stack_settings: Settings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the session stack's database."""
    with db.connect(stack_settings, autocommit=True) as connection:
        yield connection
