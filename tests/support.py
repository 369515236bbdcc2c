"""Helpers shared by tests and fixtures: private stack settings on free ports."""

from __future__ import annotations

import socket
from pathlib import Path

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
