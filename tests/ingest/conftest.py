"""Fixtures for ingest tests: worker processes (always stopped cleanly) and a publisher."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gridshare.core.settings import Settings
from tests.ingest.fleet import IngestProcess, Publisher


@pytest.fixture
def ingest_worker(
    stack_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., IngestProcess]]:
    """Start `gridshare ingest` workers, by default with `--retire`, and stop each with SIGTERM
    at the end of the test, so no session of a test's worker outlives the test (an offline
    member of the share group would take a share of later tests' messages)."""
    workers: list[IngestProcess] = []

    def start(
        name: str | None = None, wait: bool = True, retire: bool = True, **settings: str
    ) -> IngestProcess:
        name = name or f"t-{secrets.token_hex(3)}"
        args = ("--retire",) if retire else ()
        worker = IngestProcess(stack_env, tmp_path, name, *args, **settings)
        workers.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in workers:
        if worker.alive():
            worker.stop()


@pytest.fixture
def publisher(stack_settings: Settings) -> Iterator[Publisher]:
    client = Publisher(stack_settings)
    yield client
    client.close()
