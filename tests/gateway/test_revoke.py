"""Revocation end to end against the real broker, database and chain: `devices revoke`, and a
deactivation made on-chain by someone else, both reach ingest's device directory in seconds."""

from __future__ import annotations

import time

import psycopg
import pytest

from gridshare.core import chain
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.gateway.broker import login_accepted
from gridshare.gateway.identity import read_identity
from gridshare.gateway.provision import provision, revoke
from gridshare.ingest.devices import DeviceDirectory
from gridshare.ingest.revocation import DeviceChanges


@pytest.fixture(scope="module")
def fleet(deployed: Settings) -> Settings:
    provision(deployed, pools=1, per_pool=3)
    return deployed


@pytest.fixture
def directory(fleet: Settings):
    directory = DeviceDirectory()
    changes = DeviceChanges(fleet, directory)
    changes.start()
    wait_for(lambda: directory.address("cp-000001"), "directory loaded")
    yield directory
    changes.stop()


def wait_for(check, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def on_chain_active(settings: Settings, device_id: str) -> bool:
    client = chain.ChainClient(settings)
    registry = client.contract(
        "DeviceRegistry", chain.read_deployment(settings).address("DeviceRegistry")
    )
    return client.call(registry.functions.device(text_id(device_id)))[2]


def test_revoke_removes_login_marks_inactive_and_deactivates_on_chain(
    fleet: Settings, conn: psycopg.Connection, directory: DeviceDirectory
) -> None:
    identity = read_identity(fleet, "cp-000002")
    assert login_accepted(fleet, identity.mqtt_username, identity.mqtt_password)
    started = time.monotonic()
    assert revoke(fleet, "cp-000002") is True
    wait_for(lambda: directory.address("cp-000002") is None, "directory forgets the device")
    assert time.monotonic() - started < 15
    assert not login_accepted(fleet, identity.mqtt_username, identity.mqtt_password)
    assert conn.execute("SELECT active FROM devices WHERE device_id = 'cp-000002'").fetchone() == (
        False,
    )
    assert not on_chain_active(fleet, "cp-000002")
    assert revoke(fleet, "cp-000002") is False  # idempotent
    again = provision(fleet, pools=1, per_pool=3)
    assert again.broker_logins_added == 0  # a revoked device gets no login back


def test_deactivation_on_chain_is_honoured(
    fleet: Settings, conn: psycopg.Connection, directory: DeviceDirectory
) -> None:
    client = chain.ChainClient(fleet)
    registry = client.contract(
        "DeviceRegistry", chain.read_deployment(fleet).address("DeviceRegistry")
    )
    operator = chain.load_accounts(fleet).operator
    client.transact(registry.functions.deactivate(text_id("cp-000003")), operator)
    wait_for(lambda: directory.address("cp-000003") is None, "directory forgets the device", 30)
    assert conn.execute("SELECT active FROM devices WHERE device_id = 'cp-000003'").fetchone() == (
        False,
    )
    assert directory.address("cp-000001") is not None
