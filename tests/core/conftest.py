"""Fixtures of the core suite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from gridshare.core.settings import Settings
from tests.support import admin_url, database_url


@pytest.fixture
def fresh_db(stack_settings: Settings) -> Iterator[Settings]:
    """A new empty database on the session stack, dropped afterwards."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    admin = admin_url(stack_settings)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{urlsplit(stack_settings.db_url).username}"')
    yield stack_settings.model_copy(update={"db_url": database_url(stack_settings, name)})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
