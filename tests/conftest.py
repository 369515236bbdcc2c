"""Session fixtures: one private local stack (real PostgreSQL, Mosquitto, Anvil) per test run.

The stack is started with the same code as `gridshare stack up`, on free ports in a temporary
state dir, so test runs never touch a developer's stack and may run side by side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from gridshare.core import db
from gridshare.core.settings import Settings
from tests.support import running_stack


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running, migrated local stack for the whole test session."""
    with running_stack(tmp_path_factory.mktemp("stack") / "state") as settings:
        yield settings


@pytest.fixture(scope="session")
def stack_env(stack_settings: Settings) -> dict[str, str]:
    """os.environ plus the stack's GRIDSHARE_* variables, for subprocesses."""
    return {**os.environ, **stack_settings.as_env()}


@pytest.fixture
def conn(stack_settings: Settings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the session stack's database."""
    with db.connect(stack_settings, autocommit=True) as connection:
        yield connection
