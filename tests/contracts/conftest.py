"""Fixtures for the contract tests: one private Anvil per session (started with the same code
as `gridshare stack up`), the contracts deployed by `deploy`, and a chain snapshot reverted
after every test so tests stay independent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3.contract import Contract

from gridshare.core.chain.accounts import Accounts, ChainAccount, derive_account, load_accounts
from gridshare.core.chain.artifacts import BUILD_DIR, Artifact
from gridshare.core.chain.attestation import (
    Attestation,
    investor_amount,
    sign_attestation,
    signing_context,
    submit_attestation,
)
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.compile import compile_contracts
from gridshare.core.chain.deploy import deploy
from gridshare.core.chain.deployment import DeploymentRecord, PoolRecord
from gridshare.core.chain.merkle import MerkleTree, leaf_hash
from gridshare.core.chain.pools import create_pool
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.core.stack.anvil import Anvil
from tests.support import free_port

TEST_SOURCES = Path(__file__).resolve().parent / "solidity"
POOL = "charging-pile-1"
SHARE_BPS = 5_000
DAY = 86_400
LEAF_TYPES = ["string", "uint64", "uint256", "uint256"]
CHALLENGE_SECONDS = 60  # the local chain's window (deploy's default on chain 31337)


@pytest.fixture(scope="session")
def chain_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a private Anvil on a free port (only the chain: these tests need no more)."""
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("chain") / "state",
        rpc_url=f"http://127.0.0.1:{free_port()}",
    )
    anvil = Anvil(settings)
    anvil.up()
    try:
        yield settings
    finally:
        anvil.down()


@pytest.fixture(scope="session")
def client(chain_settings: Settings) -> ChainClient:
    return ChainClient(chain_settings)


@pytest.fixture(scope="session")
def record(chain_settings: Settings, client: ChainClient) -> DeploymentRecord:
    return deploy(chain_settings, client).record


@pytest.fixture(scope="session")
def accounts(chain_settings: Settings, record: DeploymentRecord) -> Accounts:
    return load_accounts(chain_settings)


@pytest.fixture(scope="session")
def test_artifacts() -> dict[str, Artifact]:
    """The test-only hostile contracts, compiled with the same pipeline (cached like the rest)."""
    return compile_contracts(TEST_SOURCES, BUILD_DIR / "test-contracts")


@pytest.fixture(autouse=True)
def chain_snapshot(request: pytest.FixtureRequest) -> Iterator[None]:
    """Revert the chain to its state before the test (only for tests that use the chain)."""
    if "client" not in request.fixturenames:
        yield
        return
    client: ChainClient = request.getfixturevalue("client")
    snapshot = client.w3.provider.make_request("evm_snapshot", [])["result"]
    yield
    client.w3.provider.make_request("evm_revert", [snapshot])


@dataclass
class Deployed:
    """The deployed contracts as web3 objects."""

    coin: Contract
    kyc: Contract
    devices: Contract
    registry: Contract


@pytest.fixture
def contracts(client: ChainClient, record: DeploymentRecord) -> Deployed:
    return Deployed(
        coin=client.contract("TestStablecoin", record.address("TestStablecoin")),
        kyc=client.contract("InvestorRegistry", record.address("InvestorRegistry")),
        devices=client.contract("DeviceRegistry", record.address("DeviceRegistry")),
        registry=client.contract("AttestationRegistry", record.address("AttestationRegistry")),
    )


@pytest.fixture
def pool(chain_settings: Settings, client: ChainClient, record: DeploymentRecord) -> PoolRecord:
    return create_pool(chain_settings, POOL, "charging_pile", SHARE_BPS, client)


@pytest.fixture
def token(client: ChainClient, pool: PoolRecord) -> Contract:
    return client.contract("RevenueShareToken", pool.token)


@pytest.fixture
def outsider() -> ChainAccount:
    """A funded Anvil account with no role and no KYC (mnemonic index 15)."""
    return derive_account(Settings().mnemonic, 15)


def make_attestation(
    epoch: int = 1,
    start: int | None = None,
    end: int | None = None,
    revenue: int = 250_000,
    devices: int = 4,
    name: str = POOL,
) -> tuple[Attestation, MerkleTree, list[bytes]]:
    """An attestation of `devices` devices with its Merkle tree and leaves."""
    start = epoch * DAY if start is None else start
    end = start + DAY if end is None else end
    per_device = revenue // devices
    leaves = [
        leaf_hash(LEAF_TYPES, [f"cp-{i:06d}", epoch, 1_000 * (i + 1), per_device])
        for i in range(devices)
    ]
    tree = MerkleTree(leaves)
    att = Attestation(
        pool_id=text_id(name),
        epoch=epoch,
        period_start=start,
        period_end=end,
        energy_wh=10_000,
        revenue_minor=revenue,
        investor_amount=investor_amount(revenue, SHARE_BPS),
        device_count=devices,
        leaves_root=tree.root,
    )
    return att, tree, leaves


def sign_by(
    att: Attestation, oracles: list[ChainAccount], client: ChainClient, registry: str
) -> list[tuple[str, bytes]]:
    """Signatures under the registry's current oracle-set version and the pool's vetoes."""
    ctx = signing_context(client, registry, att.pool_id)
    return [sign_attestation(att, o, ctx) for o in oracles]


def submit(
    client: ChainClient, record: DeploymentRecord, accounts: Accounts, att: Attestation, n: int = 3
) -> None:
    registry = record.address("AttestationRegistry")
    sigs = sign_by(att, accounts.oracles[:n], client, registry)
    submit_attestation(client, registry, att, sigs, accounts.operator)


def advance(client: ChainClient, seconds: int) -> None:
    """Move the chain's clock forward and mine a block (past a challenge window)."""
    client.increase_time(seconds)


def chain_now(client: ChainClient) -> int:
    return int(client.w3.eth.get_block("latest")["timestamp"])


def submit_final(
    client: ChainClient, record: DeploymentRecord, accounts: Accounts, att: Attestation
) -> None:
    """Submit, then let the challenge window pass."""
    submit(client, record, accounts, att)
    advance(client, CHALLENGE_SECONDS + 1)
