"""`gridshare deploy`: compile, deploy and wire the contracts; idempotent per chain.

A record whose contracts all have code on the chain means the work is done. Otherwise (no
record, or a chain that was reset) everything is deployed afresh and the record rewritten.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gridshare.core.chain.accounts import Accounts, load_accounts
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.compile import compile_contracts
from gridshare.core.chain.deployment import (
    CONTRACT_NAMES,
    DeploymentRecord,
    read_deployment,
    record_lock,
    write_deployment,
)
from gridshare.core.errors import NotDeployed
from gridshare.core.settings import Settings

log = logging.getLogger(__name__)

KYC_VALIDITY_SECONDS = 10 * 365 * 86400
OPERATOR_FLOAT = 1_000_000_000 * 10**6  # test stablecoin minted to the operator: 1e9 gHKD
MAX_UINT256 = 2**256 - 1


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
    if all(a and client.has_code(a) for a in addresses):
        return record
    return None


def deploy(settings: Settings, client: ChainClient | None = None) -> DeployResult:
    """Deploy everything unless this chain already has it; write the record."""
    client = client or ChainClient(settings)
    compile_contracts()
    with record_lock(settings):
        existing = deployed_record(client)
        if existing is not None:
            return DeployResult(existing, deployed=False)
        accounts = load_accounts(settings)
        record = _deploy_all(client, accounts)
        write_deployment(settings, record)
        log.info("contracts deployed", extra={"fields": record.contracts})
        return DeployResult(record, deployed=True)


def _deploy_all(client: ChainClient, accounts: Accounts) -> DeploymentRecord:
    admin, operator = accounts.admin, accounts.operator
    stable, first = client.deploy("TestStablecoin", [admin.address], admin)
    investors, _ = client.deploy(
        "InvestorRegistry", [admin.address, accounts.kyc_agent.address], admin
    )
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
        ],
        admin,
    )
    kyc = client.contract("InvestorRegistry", investors)
    expiry = int(time.time()) + KYC_VALIDITY_SECONDS
    for investor in accounts.investors:
        client.transact(kyc.functions.admit(investor.address, expiry), accounts.kyc_agent)
    coin = client.contract("TestStablecoin", stable)
    client.transact(coin.functions.mint(operator.address, OPERATOR_FLOAT), admin)
    client.transact(coin.functions.approve(registry, MAX_UINT256), operator)
    return DeploymentRecord(
        chain_id=client.settings.chain_id,
        block=first["blockNumber"],
        contracts={
            "TestStablecoin": stable,
            "InvestorRegistry": investors,
            "DeviceRegistry": devices,
            "AttestationRegistry": registry,
        },
    )
