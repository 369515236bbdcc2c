"""`gridshare ingest`: run one ingest worker (several may run at once, each with its own name)."""

from __future__ import annotations

import typer

from gridshare.core.logs import setup_logging
from gridshare.core.settings import get_settings
from gridshare.ingest.worker import Worker


def ingest(
    worker: str = typer.Option(
        None,
        "--worker",
        help="Worker name, part of the default client id [GRIDSHARE_INGEST_WORKER]",
    ),
    client_id: str = typer.Option(
        None, "--client-id", help="MQTT client id (the broker keeps the session under it)"
    ),
    batch_size: int = typer.Option(None, help="Messages per commit at most"),
    batch_seconds: float = typer.Option(None, help="Longest wait before a batch is committed"),
    shared: bool = typer.Option(
        None,
        "--shared/--no-shared",
        help="Share telemetry with other workers [GRIDSHARE_INGEST_SHARED]",
    ),
    retire: bool = typer.Option(
        False, help="On stop, leave for good: unsubscribe, commit the rest, end the MQTT session"
    ),
) -> None:
    """Store device telemetry from MQTT in the database; acknowledge only what is committed."""
    given = {
        "ingest_worker": worker,
        "ingest_client_id": client_id,
        "ingest_batch_size": batch_size,
        "ingest_batch_seconds": batch_seconds,
        "ingest_shared": shared,
    }
    settings = get_settings(**{k: v for k, v in given.items() if v is not None})
    setup_logging(settings.log_level)
    Worker(settings, retire=retire).run()
