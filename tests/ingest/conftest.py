"""Fixtures for ingest tests: worker processes (always stopped cleanly) and a publisher."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gridshare.core.settings import Settings
from tests.ingest.fleet import IngestProcess, Publisher
from tests.support import running_stack


@pytest.fixture(scope="package")
def stack_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Ingest tests count every message the broker hands their workers, so they get a stack
    of their own (per flavor): no other suite's devices publish on it."""
    flavor = request.param
    state = tmp_path_factory.mktemp(f"ingest-stack-{flavor}") / "state"
    with running_stack(state, flavor) as settings:
        yield settings


@pytest.fixture(scope="package")
def stack_env(stack_settings: Settings) -> dict[str, str]:
    return {**os.environ, **stack_settings.as_env()}


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
