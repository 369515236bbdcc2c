"""`gridshare api`: check that the database's schema is current, serve with uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from gridshare.core import db
from gridshare.core.logs import setup_logging
from gridshare.core.settings import get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def app_from_env() -> FastAPI:
    """The uvicorn factory: the app for the process's GRIDSHARE_* settings."""
    from gridshare.api.main import create_app

    return create_app(get_settings())


def serve(
    host: Annotated[str | None, typer.Option(help="default GRIDSHARE_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default GRIDSHARE_API_PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, max=16, help="processes")] = 1,
) -> None:
    """Serve the API and the dashboard (stops cleanly on SIGTERM)."""
    import uvicorn

    settings = get_settings()
    setup_logging(settings.log_level)
    db.require_current(settings.for_service("api"))  # unreachable or not migrated: one line
    typer.echo(f"gridshare api: http://{host or settings.api_host}:{port or settings.api_port}/")
    uvicorn.run(
        "gridshare.api.cli:app_from_env",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_worker_healthcheck=60,  # a worker importing web3 on a busy machine is slow
    )
