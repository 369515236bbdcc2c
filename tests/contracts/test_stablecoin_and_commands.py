"""`gridshare deploy --stablecoin` with an existing ERC-20, its refusals, and the guardian
and agent commands as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deploy import challenge_period, deploy
from gridshare.core.chain.pools import create_pool
from gridshare.core.errors import ConfigError
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from tests.contracts.conftest import POOL, make_attestation, submit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GRIDSHARE = str(Path(sys.executable).parent / "gridshare")


def other_state(chain_settings: Settings, tmp_path: Path, **changes: object) -> Settings:
    """The same chain, another state dir (a second deployment on it)."""
    return chain_settings.model_copy(update={"state_dir": tmp_path / "state", **changes})


def test_deploy_with_an_existing_stablecoin(chain_settings, client, record, tmp_path):
    settings = other_state(chain_settings, tmp_path)
    result = deploy(settings, ChainClient(settings), stablecoin=record.stablecoin.lower())
    contracts = result.record.contracts
    assert "TestStablecoin" not in contracts
    assert contracts["Stablecoin"] == record.stablecoin
    assert result.record.stablecoin == record.stablecoin
    registry = client.contract("AttestationRegistry", contracts["AttestationRegistry"])
    assert client.call(registry.functions.stablecoin()) == record.stablecoin
    assert client.call(registry.functions.coinDecimals()) == 6
    pool = create_pool(settings, "pv-plant-42", "pv_plant", 5_000, ChainClient(settings))
    token = client.contract("RevenueShareToken", pool.token)
    assert client.call(token.functions.stablecoin()) == record.stablecoin


def test_stablecoin_refusals(chain_settings, client, record, pool, tmp_path):
    settings = other_state(chain_settings, tmp_path)
    for coin, words in (
        ("0x1234", "no address"),
        ("0x" + "42" * 20, "no code"),
        (pool.token, "18 decimals"),  # a pool token is an 18-decimal ERC-20
    ):
        with pytest.raises(ConfigError) as excinfo:
            deploy(settings, ChainClient(settings), stablecoin=coin)
        assert words in str(excinfo.value)


def test_challenge_period_defaults(chain_settings):
    assert challenge_period(chain_settings) == 60
    assert challenge_period(chain_settings.model_copy(update={"chain_id": 1})) == 86_400
    configured = chain_settings.model_copy(update={"challenge_period_seconds": 3600})
    assert challenge_period(configured) == 3600


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**settings.as_env(), "PATH": str(Path(sys.executable).parent) + ":/usr/bin"}
    return subprocess.run(
        [GRIDSHARE, *args], env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT
    )


def test_guardian_and_agent_commands(chain_settings, client, record, accounts, contracts, token):
    att, _, _ = make_attestation()
    submit(client, record, accounts, att)
    vetoed = run(
        chain_settings, "guardian", "veto", "--pool", POOL, "--epoch", "1", "--reason", "x"
    )
    assert vetoed.returncode == 0, vetoed.stderr
    assert "veto charging-pile-1 epoch 1: tx 0x" in vetoed.stdout
    assert client.call(contracts.registry.functions.epochStatus(text_id(POOL), 1)) == 3
    again = run(chain_settings, "guardian", "veto", "--pool", POOL, "--epoch", "1", "--reason", "x")
    assert again.returncode == 1 and "NotPending" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    holder = accounts.investors[1].address
    assert run(chain_settings, "agent", "freeze", holder).returncode == 0
    assert client.call(token.functions.isFrozen(holder))
    assert run(chain_settings, "agent", "unfreeze", holder).returncode == 0
    assert not client.call(token.functions.isFrozen(holder))
    newcomer = to_checksum_address("0x" + "ab" * 20)
    allowed = run(chain_settings, "agent", "allow", newcomer, "--until", "2099-12-31")
    assert allowed.returncode == 0, allowed.stderr
    assert client.call(contracts.kyc.functions.isAllowed(newcomer))
    moved = run(
        chain_settings, "agent", "force-transfer", "--pool", POOL,
        "--from", holder, "--to", newcomer, "--amount", "5",
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert client.call(token.functions.balanceOf(newcomer)) == 5
    recovered = run(chain_settings, "agent", "recover", "--lost", newcomer, "--replacement", holder)
    assert recovered.returncode == 0, recovered.stderr
    assert client.call(token.functions.isLost(newcomer))
    assert run(chain_settings, "agent", "disallow", newcomer).returncode == 0
    bad = run(chain_settings, "agent", "freeze", "not-an-address")
    assert bad.returncode == 1 and "not an Ethereum address" in bad.stderr
