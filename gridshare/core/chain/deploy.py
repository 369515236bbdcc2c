"""`gridshare deploy`: compile, deploy and wire the contracts; idempotent per chain.

A record whose contracts all have code on the chain means the work is done. Otherwise (no
record, or a chain that was reset) everything is deployed afresh and the record rewritten.

Revenue is paid in an existing ERC-20 when one is named (`--stablecoin` or
GRIDSHARE_STABLECOIN_ADDRESS; its decimals are read on-chain), else in a test coin deployed
here and minted to the operator. The record names the coin in use as `Stablecoin`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from eth_utils import is_address, to_checksum_address
from web3.exceptions import BadFunctionCallOutput

from gridshare.core.chain.accounts import Accounts, load_accounts
from gridshare.core.chain.client import LOCAL_CHAIN_ID, ChainClient
from gridshare.core.chain.compile import compile_contracts
from gridshare.core.chain.deployment import (
    CONTRACT_NAMES,
    DeploymentRecord,
    read_deployment,
    record_lock,
    write_deployment,
)
from gridshare.core.errors import ConfigError, ContractRevert, NotDeployed
from gridshare.core.settings import Settings

log = logging.getLogger(__name__)

KYC_VALIDITY_SECONDS = 10 * 365 * 86400
OPERATOR_FLOAT = 1_000_000_000 * 10**6  # test stablecoin minted to the operator: 1e9 gHKD
MAX_UINT256 = 2**256 - 1
LOCAL_CHALLENGE_SECONDS = 60  # the local stack's short challenge window
PRODUCTION_CHALLENGE_SECONDS = 24 * 3600
MAX_COIN_DECIMALS = 8  # as AttestationRegistry.MAX_COIN_DECIMALS


@dataclass(frozen=True)
class DeployResult:
    record: DeploymentRecord
    deployed: bool  # False when the existing deployment was kept


def deployed_record(client: ChainClient) -> DeploymentRecord | None:
    """The record for this chain if all its contracts still have code, else None."""
    try:
        record = read_deployment(client.settings)
    except NotDeployed:
        return None
    addresses = [record.contracts.get(name) for name in CONTRACT_NAMES]
    addresses.append(record.contracts.get("Stablecoin") or record.contracts.get("TestStablecoin"))
    if all(a and client.has_code(a) for a in addresses):
        return record
    return None


def challenge_period(settings: Settings) -> int:
    """The configured window, else the local chain's short one or the production 24 h."""
    if settings.challenge_period_seconds is not None:
        return settings.challenge_period_seconds
    if settings.chain_id == LOCAL_CHAIN_ID:
        return LOCAL_CHALLENGE_SECONDS
    return PRODUCTION_CHALLENGE_SECONDS


def deploy(
    settings: Settings, client: ChainClient | None = None, stablecoin: str | None = None
) -> DeployResult:
    """Deploy everything unless this chain already has it; write the record. `stablecoin`
    (default GRIDSHARE_STABLECOIN_ADDRESS) is an existing ERC-20 to pay revenue in."""
    client = client or ChainClient(settings)
    compile_contracts()
    with record_lock(settings):
        existing = deployed_record(client)
        if existing is not None:
            return DeployResult(existing, deployed=False)
        accounts = load_accounts(settings)
        coin = stablecoin or settings.stablecoin_address
        record = _deploy_all(client, accounts, _checked_coin(client, coin) if coin else None)
        write_deployment(settings, record)
        log.info("contracts deployed", extra={"fields": record.contracts})
        return DeployResult(record, deployed=True)


def _checked_coin(client: ChainClient, untrusted_address: str) -> str:
    """The address of an ERC-20 with code and supported decimals, or a ConfigError."""
    if not is_address(untrusted_address):
        raise ConfigError("GRIDSHARE_STABLECOIN_ADDRESS", f"{untrusted_address!r} is no address")
    address = to_checksum_address(untrusted_address)
    if not client.has_code(address):
        raise ConfigError("GRIDSHARE_STABLECOIN_ADDRESS", f"{address} has no code on this chain")
    try:
        decimals = int(client.call(client.contract("TestStablecoin", address).functions.decimals()))
    except (ContractRevert, ValueError, BadFunctionCallOutput) as exc:
        raise ConfigError("GRIDSHARE_STABLECOIN_ADDRESS", f"{address}: no decimals()") from exc
    if decimals > MAX_COIN_DECIMALS:
        raise ConfigError(
            "GRIDSHARE_STABLECOIN_ADDRESS",
            f"{address} has {decimals} decimals; at most {MAX_COIN_DECIMALS} are supported",
        )
    return address


def _deploy_all(
    client: ChainClient, accounts: Accounts, existing_coin: str | None
) -> DeploymentRecord:
    admin, operator = accounts.admin, accounts.operator
    contracts: dict[str, str] = {}
    if existing_coin is None:
        stable, first = client.deploy("TestStablecoin", [admin.address], admin)
        contracts["TestStablecoin"] = stable
    else:
        stable = existing_coin
        first = None
    investors, investors_receipt = client.deploy(
        "InvestorRegistry", [admin.address, accounts.kyc_agent.address], admin
    )
    first = first or investors_receipt
    devices, _ = client.deploy("DeviceRegistry", [admin.address, operator.address], admin)
    oracle_addresses = sorted((o.address for o in accounts.oracles), key=lambda a: int(a, 16))
    registry, _ = client.deploy(
        "AttestationRegistry",
        [
            admin.address,
            operator.address,
            stable,
            oracle_addresses,
            client.settings.oracle_threshold,
            challenge_period(client.settings),
        ],
        admin,
    )
    attestations = client.contract("AttestationRegistry", registry)
    guardian_role = client.call(attestations.functions.GUARDIAN_ROLE())
    client.transact(
        attestations.functions.grantRole(guardian_role, accounts.guardian.address), admin
    )
    kyc = client.contract("InvestorRegistry", investors)
    expiry = int(time.time()) + KYC_VALIDITY_SECONDS
    for investor in accounts.investors:
        client.transact(kyc.functions.admit(investor.address, expiry), accounts.kyc_agent)
    if existing_coin is None:
        coin = client.contract("TestStablecoin", stable)
        client.transact(coin.functions.mint(operator.address, OPERATOR_FLOAT), admin)
        client.transact(coin.functions.approve(registry, MAX_UINT256), operator)
    contracts.update(
        Stablecoin=stable,
        InvestorRegistry=investors,
        DeviceRegistry=devices,
        AttestationRegistry=registry,
    )
    return DeploymentRecord(
        chain_id=client.settings.chain_id, block=first["blockNumber"], contracts=contracts
    )
