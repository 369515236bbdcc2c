"""`deploy`, pools and devices: idempotent, records per SPEC §9, one-line errors."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gridshare.core.chain.accounts import accounts_path, derive_accounts
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deploy import deploy
from gridshare.core.chain.deployment import deployment_path, read_deployment, write_deployment
from gridshare.core.chain.pools import create_pool, register_devices
from gridshare.core.errors import NotDeployed, ServiceUnreachable
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from tests.contracts.conftest import POOL
from tests.support import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_deploy_twice_is_a_no_op(chain_settings, client, record):
    block = client.w3.eth.block_number
    again = deploy(chain_settings, client)
    assert not again.deployed
    assert again.record == read_deployment(chain_settings)
    assert again.record.contracts == record.contracts
    assert client.w3.eth.block_number == block


def test_record_and_accounts_files(chain_settings, record):
    data = json.loads(deployment_path(chain_settings).read_text())
    assert set(data) == {"chain_id", "block", "contracts", "pools"}
    assert data["chain_id"] == 31337
    assert set(data["contracts"]) >= {"AttestationRegistry", "DeviceRegistry", "TestStablecoin"}
    path = accounts_path(chain_settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    accounts = json.loads(path.read_text())
    assert set(accounts) == {"admin", "operator", "oracles", "investors"}
    assert len(accounts["oracles"]) == 5 and len(accounts["investors"]) == 3
    assert accounts["admin"]["address"] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert set(accounts["operator"]) == {"address", "private_key"}


def test_accounts_by_mnemonic_index():
    accounts = derive_accounts(Settings())
    assert accounts.operator.address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert accounts.oracles[0].address == "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    assert accounts.investors[0].address == "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955"


def test_roles_and_wiring(client, record, accounts, contracts):
    reg = contracts.registry.functions
    assert client.call(reg.threshold()) == 3
    assert sorted(client.call(reg.oracles())) == sorted(o.address for o in accounts.oracles)
    operator_role = client.call(reg.OPERATOR_ROLE())
    assert client.call(reg.hasRole(operator_role, accounts.operator.address))
    assert client.call(reg.hasRole(b"\0" * 32, accounts.admin.address))
    for investor in accounts.investors:
        assert client.call(contracts.kyc.functions.isAllowed(investor.address))


def test_create_pool_and_register_devices_twice(chain_settings, client, record, contracts):
    first = create_pool(chain_settings, "pv-plant-1", "pv_plant", 4_000, client)
    again = create_pool(chain_settings, "pv-plant-1", "pv_plant", 4_000, client)
    assert first == again
    stored = read_deployment(chain_settings).pools["pv-plant-1"]
    assert stored.pool_id == "0x" + text_id("pv-plant-1").hex()
    assert stored.share_bps == 4_000 and stored.device_type == "pv_plant"
    devices = [(f"pv-{i:06d}", "0x" + f"{i + 1:040x}", "pv-plant-1") for i in range(250)]
    assert register_devices(chain_settings, devices, client) == 250
    assert register_devices(chain_settings, devices, client) == 0
    assert client.call(contracts.devices.functions.deviceCount()) == 250
    signer, pid, active = client.call(contracts.devices.functions.device(text_id("pv-000007")))
    assert int(signer, 16) == 8 and pid == text_id("pv-plant-1") and active


def test_register_devices_needs_the_pool(chain_settings, client, record):
    with pytest.raises(Exception, match="not created on-chain"):
        register_devices(chain_settings, [("cp-1", "0x" + "11" * 20, "nope-1")], client)


def test_not_deployed(tmp_path):
    with pytest.raises(NotDeployed, match="gridshare deploy"):
        read_deployment(Settings(state_dir=tmp_path))


def test_unreachable_chain(tmp_path):
    settings = Settings(state_dir=tmp_path, rpc_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceUnreachable, match="GRIDSHARE_RPC_URL"):
        deploy(settings)


def test_cli_deploy(chain_settings, record):
    """`gridshare deploy` against a deployed chain: a no-op; against no chain: one line."""
    env = {**chain_settings.as_env(), "PATH": str(Path(sys.executable).parent) + ":/usr/bin"}
    gridshare = str(Path(sys.executable).parent / "gridshare")
    done = subprocess.run(
        [gridshare, "deploy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "already deployed" in done.stdout
    env["GRIDSHARE_RPC_URL"] = f"http://127.0.0.1:{free_port()}"
    failed = subprocess.run(
        [gridshare, "deploy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert failed.returncode != 0
    assert len(failed.stderr.strip().splitlines()) == 1
    assert "GRIDSHARE_RPC_URL" in failed.stderr


def test_record_without_code_is_redeployed(chain_settings, client, record, tmp_path):
    """A record left over from a chain that was reset is replaced, not trusted."""
    settings = Settings(state_dir=tmp_path / "state", rpc_url=chain_settings.rpc_url)
    stale = record.model_copy(
        update={"contracts": {name: "0x" + "ab" * 20 for name in record.contracts}}
    )
    write_deployment(settings, stale)
    result = deploy(settings, ChainClient(settings))
    assert result.deployed
    assert set(result.record.contracts.values()).isdisjoint(stale.contracts.values())
    assert all(client.has_code(a) for a in result.record.contracts.values())


def test_lost_pool_record_is_recovered_from_the_chain(chain_settings, client, record, pool):
    """create_pool finds a pool already registered on-chain instead of deploying a twin."""
    current = read_deployment(chain_settings)
    del current.pools[POOL]
    write_deployment(chain_settings, current)
    again = create_pool(chain_settings, POOL, "charging_pile", 5_000, client)
    assert again.token == pool.token
