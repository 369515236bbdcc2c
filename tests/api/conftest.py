"""API test fixtures: the app in process (TestClient) and as a real `gridshare api` process,
over the session's stack, with devices whose readings went through the real ingest worker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from gridshare.api.main import create_app
from gridshare.core.chain.deploy import deploy
from gridshare.core.chain.pools import create_pool, register_devices
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key
from gridshare.oracle import funding
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from tests.api.data import Fleet, ingest_fleet
from tests.oracle.conftest import oracle_settings
from tests.support import free_port

GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))
SIWE_DOMAIN = "invest.gridshare.test"


POOL = "charging-pile-7001"
SHARE_BPS = 3_000


@dataclass(frozen=True)
class Attested:
    fleet: Fleet
    epochs: int
    ctx: OracleContext


@pytest.fixture(scope="session")
def attested(
    stack_settings: Settings, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Attested:
    """A chain pool whose ingested readings the oracle attested epoch by epoch, funded once."""
    deploy(stack_settings)
    record = create_pool(stack_settings, POOL, "charging_pile", SHARE_BPS)
    with psycopg.connect(stack_settings.db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pools (name, pool_id, device_type, share_bps, token_address)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (POOL, record.pool_id, "charging_pile", SHARE_BPS, record.token),
        )
    fleet = ingest_fleet(
        stack_settings, stack_env, tmp_path_factory.mktemp("pool-ingest"), pool=POOL
    )
    register_devices(  # the oracle checks readings against the devices' on-chain keys
        stack_settings, [(d.device_id, address_for_key(d.key), POOL) for d in fleet.devices]
    )
    ctx = OracleContext.create(oracle_settings(stack_settings))
    epochs = 0
    for _ in range(5):
        outcome = attest_next(ctx, POOL, force=True)
        if outcome.status != "confirmed":
            break
        epochs += 1
    assert epochs >= 2, outcome.message
    ctx.client.increase_time(ctx.client.call(ctx.registry.functions.challengePeriod()))
    funding.fund(ctx, POOL)
    return Attested(fleet, epochs, ctx)


@pytest.fixture(scope="session")
def api_settings(stack_settings: Settings) -> Settings:
    """The stack's settings with a fixed SIWE domain and operator key."""
    return stack_settings.model_copy(
        update={"api_domain": SIWE_DOMAIN, "api_key": "test-operator-key"}
    )


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    """A fresh app (its own rate-limit buckets) in process, lifespan run."""
    with TestClient(create_app(api_settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def fleet(
    stack_settings: Settings, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Fleet:
    """Two days of irregular readings of a few devices, stored by a real ingest worker."""
    return ingest_fleet(stack_settings, stack_env, tmp_path_factory.mktemp("ingest"))


@pytest.fixture(scope="session")
def server(
    stack_env: dict[str, str], api_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`gridshare api` as a child process; its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    env = {
        **stack_env,
        "GRIDSHARE_API_PORT": str(port),
        "GRIDSHARE_API_DOMAIN": api_settings.api_domain,
        "GRIDSHARE_API_KEY": api_settings.api_key,
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen([GRIDSHARE, "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, log_path)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_healthy(base: str, proc: subprocess.Popen, log_path: Path) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gridshare api exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gridshare api not up after 30 s: {log_path.read_text()[-2000:]}")
