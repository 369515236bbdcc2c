"""Helpers shared by tests and fixtures: private stack settings on free ports."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from gridshare.core import db, stack
from gridshare.core.settings import Settings
from gridshare.core.stack.postgres import timescaledb_installed
from gridshare.core.stack.process import free_port as free_port  # tests take it from here

# Suites that run once per database flavor (storage, ingest, oracle, API): every test in them
# that uses the stack runs on plain PostgreSQL and on TimescaleDB.
FLAVOR_SUITES = frozenset({"core", "ingest", "oracle", "api", "audit", "bridges"})
NO_TIMESCALEDB = "TimescaleDB is not installed here (make setup builds it as root)"
# An administrator's URL of a server with TimescaleDB (for example the timescale/timescaledb
# image): when set, the [timescale] stacks put their database there, as external databases.
TIMESCALE_SERVER = "GRIDSHARE_TEST_TIMESCALE_URL"


@cache
def _timescale_available() -> bool:
    """Whether a [timescale] stack can run here (asked once per test session)."""
    return bool(os.environ.get(TIMESCALE_SERVER)) or timescaledb_installed(Settings().pg_bin_dir)


def stack_flavors(suite: str) -> list:
    """The flavors a suite's stack runs on: both for the flavor suites (TimescaleDB skipped,
    with the reason, where it is not installed), else the one the local stack would choose."""
    timescale = _timescale_available()
    if suite not in FLAVOR_SUITES:
        return ["timescale" if timescale else "postgres"]
    marks = () if timescale else (pytest.mark.skip(reason=NO_TIMESCALEDB),)
    return ["postgres", pytest.param("timescale", marks=marks)]


def stack_settings_for(state_dir: Path, flavor: str = "auto") -> Settings:
    """Settings for a private stack in `state_dir`, on free ports."""
    return Settings(
        state_dir=state_dir,
        db_flavor=flavor,
        db_url=f"postgresql://gridshare@127.0.0.1:{free_port()}/gridshare",
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        mqtt_device_url=f"mqtts://127.0.0.1:{free_port()}",
        rpc_url=f"http://127.0.0.1:{free_port()}",
        api_port=free_port(),
        ingest_metrics_port=free_port(),
    )


def admin_url(settings: Settings) -> str:
    """A superuser's URL on the server that holds the settings' database."""
    if settings.db_external:
        return os.environ[TIMESCALE_SERVER]
    return f"postgresql://postgres@127.0.0.1:{settings.db_port}/postgres"


def database_url(settings: Settings, name: str) -> str:
    """The URL of another database, `name`, on the server and as the role of the settings'."""
    return urlunsplit(urlsplit(settings.db_url)._replace(path=f"/{name}"))


@contextmanager
def running_stack(state_dir: Path, flavor: str = "auto") -> Iterator[Settings]:
    """A private, running, migrated stack for the duration of the block; a [timescale] stack
    keeps its database on the server GRIDSHARE_TEST_TIMESCALE_URL names, when it is set."""
    settings = stack_settings_for(state_dir, flavor)
    server = os.environ.get(TIMESCALE_SERVER) if flavor == "timescale" else None
    if server:
        name = f"gridshare_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        settings = settings.model_copy(update={"db_url": db_url, "db_external": True})
    stack.up(settings)
    try:
        db.migrate(settings)
        yield settings
    finally:
        stack.down(settings)
        if server:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
