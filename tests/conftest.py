"""Session fixtures: one private local stack (real PostgreSQL, Mosquitto, Anvil) per test run.

The stack is started with the same code as `gridshare stack up`, on free ports in a temporary
state dir, so test runs never touch a developer's stack and may run side by side.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gridshare.core import db, stack
from gridshare.core.settings import Settings


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_settings_for(state_dir: Path) -> Settings:
    """Settings for a private stack in `state_dir`, on free ports."""
    return Settings(
        state_dir=state_dir,
        db_url=f"postgresql://gridshare@127.0.0.1:{free_port()}/gridshare",
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        rpc_url=f"http://127.0.0.1:{free_port()}",
        api_port=free_port(),
        ingest_metrics_port=free_port(),
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The GRIDSHARE_* variables that make a child `gridshare` process use `settings`."""
    return {
        "GRIDSHARE_STATE_DIR": str(settings.state_path),
        "GRIDSHARE_DB_URL": settings.db_url,
        "GRIDSHARE_MQTT_URL": settings.mqtt_url,
        "GRIDSHARE_RPC_URL": settings.rpc_url,
        "GRIDSHARE_API_PORT": str(settings.api_port),
        "GRIDSHARE_INGEST_METRICS_PORT": str(settings.ingest_metrics_port),
        "GRIDSHARE_PERIOD_SECONDS": str(settings.period_seconds),
    }


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running, migrated local stack for the whole test session."""
    settings = stack_settings_for(tmp_path_factory.mktemp("stack") / "state")
    stack.up(settings)
    try:
        db.migrate(settings)
        yield settings
    finally:
        stack.down(settings)


@pytest.fixture(scope="session")
def stack_env(stack_settings: Settings) -> dict[str, str]:
    """os.environ plus the stack's GRIDSHARE_* variables, for subprocesses."""
    return {**os.environ, **settings_env(stack_settings)}


@pytest.fixture
def conn(stack_settings: Settings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the session stack's database."""
    with db.connect(stack_settings, autocommit=True) as connection:
        yield connection
