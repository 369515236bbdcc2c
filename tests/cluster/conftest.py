"""A private stack whose broker is a three-node cluster, for the whole module, plus helpers
to run ingest workers as real `gridshare ingest` processes."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridshare.core import db, stack
from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.core.stack.process import ManagedProcess, free_port_range
from gridshare.gateway.provision import provision
from gridshare.ingest.metrics import wait_ready
from tests.support import free_port, stack_settings_for

GRIDSHARE = str(Path(sys.executable).parent / "gridshare")
NODES = 3


@pytest.fixture(scope="session")
def cluster_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running stack with a clustered broker and 3 pools of 4 provisioned devices."""
    settings = stack_settings_for(tmp_path_factory.mktemp("cluster") / "state")
    settings = settings.model_copy(
        update={"cluster": NODES, "cluster_port": free_port_range(cluster.PORT_SPAN)}
    )
    try:  # a node that failed to start in time may still come up: stop it too
        stack.up(settings)
        db.migrate(settings)
        provision(settings, pools=3, per_pool=4, chain=False)
        yield settings
    finally:
        stack.down(settings)


class Workers:
    """`gridshare ingest` processes, each with its own name and metrics port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ports: dict[str, int] = {}

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(
            name,
            pid_file=self.settings.state_path / "run" / f"{name}.pid",
            log_file=self.settings.state_path / "logs" / f"{name}.log",
            exe_name="gridshare",
        )

    def start(self, name: str, **env: str) -> ManagedProcess:
        self.ports[name] = free_port()
        proc = self.process(name)
        proc.start(
            [GRIDSHARE, "ingest", "--worker", name],
            env={
                **self.settings.as_env(),
                "GRIDSHARE_INGEST_METRICS_PORT": str(self.ports[name]),
                **env,
            },
        )
        assert wait_ready(self.ports[name], timeout=120), proc.log_tail()
        return proc

    def stored(self, name: str) -> int:
        """What this worker stored (its own counter; 0 if it is gone)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=5).text
        except httpx.HTTPError:
            return 0
        found = re.search(r'gridshare_ingest_messages_total\{outcome="stored"\} (\S+)', text)
        return int(float(found.group(1))) if found else 0

    def stop_all(self) -> None:
        for name in self.ports:
            self.process(name).stop()


@pytest.fixture
def workers(cluster_settings: Settings) -> Iterator[Workers]:
    running = Workers(cluster_settings)
    try:
        yield running
    finally:
        running.stop_all()
