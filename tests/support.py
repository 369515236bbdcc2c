"""Helpers shared by tests and fixtures: private stack settings on free ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
        mqtt_device_url=f"mqtts://127.0.0.1:{free_port()}",
        rpc_url=f"http://127.0.0.1:{free_port()}",
        api_port=free_port(),
        ingest_metrics_port=free_port(),
    )


@contextmanager
def running_stack(state_dir: Path) -> Iterator[Settings]:
    """A private, running, migrated stack for the duration of the block."""
    settings = stack_settings_for(state_dir)
    stack.up(settings)
    try:
        db.migrate(settings)
        yield settings
    finally:
        stack.down(settings)
