"""Bridge fixtures: a charging-pile pool with a tariff, the real ingest worker and the OCPP
bridge as child processes on the session stack."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridshare.core.payloads import DeviceType
from gridshare.core.settings import Settings
from gridshare.gateway.ocpp import ProvisionedCharger, provision_ocpp, set_tariff
from gridshare.gateway.provision import provision
from tests.bridges.peers import BridgeProcess
from tests.ingest.fleet import IngestProcess, wait_until
from tests.oracle.conftest import ctx, deployed  # noqa: F401 - fixtures used here too
from tests.support import free_port

TARIFF = 300  # HK cents per kWh


@pytest.fixture(scope="session")
def cp_pool(stack_settings: Settings) -> str:
    pool = provision(stack_settings, 1, 0, device_type=DeviceType.CHARGING_PILE, chain=False).pools[
        0
    ]
    set_tariff(stack_settings, pool, TARIFF)
    return pool


@pytest.fixture(scope="module")
def ingest(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    worker = IngestProcess(stack_env, tmp_path_factory.mktemp("ingest"), "bridges")
    worker.start(wait=False)
    wait_until(  # generous: this suite starts it beside two busy child processes
        lambda: "ingest worker running" in worker.log() or not worker.alive(), 120, "ingest"
    )
    assert worker.alive(), worker.log()
    yield
    worker.stop()


@pytest.fixture(scope="module")
def bridge_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def ocpp_bridge(
    stack_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    ingest: None,
    bridge_port: int,
) -> Iterator[BridgeProcess]:
    process = ocpp_process(stack_env, tmp_path_factory.mktemp("bridge") / "ocpp.log", bridge_port)
    yield process.start("ocpp bridge listening")
    if process.proc is not None and process.proc.poll() is None:
        process.stop()


def ocpp_process(env: dict[str, str], log: Path, port: int) -> BridgeProcess:
    return BridgeProcess(env, log, "ocpp", "--host", "127.0.0.1", "--port", str(port))


@pytest.fixture
def charger(stack_settings: Settings, cp_pool: str) -> ProvisionedCharger:
    return provision_ocpp(stack_settings, cp_pool, f"T{secrets.token_hex(4)}", chain=False)
