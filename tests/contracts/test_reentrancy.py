"""A hostile stablecoin receiver or a hostile pool token cannot take revenue twice."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from web3.utils.address import get_create_address

from gridshare.core.errors import ContractRevert
from gridshare.core.ids import text_id
from tests.contracts.conftest import make_attestation, submit_final

REENTRANT_CALL = keccak(text="ReentrancyGuardReentrantCall()")[:4]


def test_receiver_cannot_claim_twice(client, record, accounts, test_artifacts):
    """The stablecoin calls back the paid holder, which re-enters claim(): refused."""
    admin, operator = accounts.admin, accounts.operator
    coin_address, _ = client.deploy(test_artifacts["HookedStablecoin"], [], admin)
    coin = client.contract(test_artifacts["HookedStablecoin"], coin_address)
    # the attacker holds tokens from issuance: its address is admin's contract two txs ahead
    nonce = client.w3.eth.get_transaction_count(admin.address)
    attacker_address = get_create_address(admin.address, nonce + 2)
    kyc = client.contract("InvestorRegistry", record.address("InvestorRegistry"))
    client.transact(kyc.functions.admit(attacker_address, 2**40), accounts.kyc_agent)
    holders = [attacker_address, accounts.investors[0].address]
    token_address, _ = client.deploy(
        "RevenueShareToken",
        [
            "Hostile pool",
            "HP",
            keccak(text="hostile"),
            coin_address,
            record.address("InvestorRegistry"),
            admin.address,
            operator.address,
            admin.address,
            holders,
            [10**18, 3 * 10**18],
        ],
        admin,
    )
    attacker, _ = client.deploy(test_artifacts["ClaimAttacker"], [token_address], admin)
    assert attacker == attacker_address
    token = client.contract("RevenueShareToken", token_address)
    client.transact(coin.functions.mint(token_address, 4_000_000), admin)
    client.transact(token.functions.distribute(4_000_000), admin)
    entitled = client.call(token.functions.claimable(attacker))
    assert 999_999 <= entitled <= 1_000_000  # rounded down, never up

    hostile = client.contract(test_artifacts["ClaimAttacker"], attacker)
    client.transact(hostile.functions.attack(), admin)

    assert client.call(coin.functions.balanceOf(attacker)) == entitled
    assert client.call(hostile.functions.reentries()) == 1
    assert client.call(hostile.functions.reentrySucceeded()) is False
    assert client.call(hostile.functions.reentryError())[:4] == REENTRANT_CALL
    assert client.call(token.functions.claimable(attacker)) == 0
    assert client.call(token.functions.claimable(accounts.investors[0].address)) >= 2_999_999


def test_token_cannot_reenter_fund(client, record, accounts, contracts, test_artifacts):
    """A pool token whose distribute() re-enters fund() (even holding the operator role)."""
    admin, operator = accounts.admin, accounts.operator
    pid = text_id("hostile-1")
    registry = contracts.registry
    hostile_address, _ = client.deploy(
        test_artifacts["HostileDistributor"],
        [record.stablecoin, registry.address, pid],
        admin,
    )
    client.transact(registry.functions.registerPool(pid, hostile_address, 5_000, 2), admin)
    role = client.call(registry.functions.OPERATOR_ROLE())
    client.transact(registry.functions.grantRole(role, hostile_address), admin)
    att, _, _ = make_attestation(name="hostile-1", revenue=100)
    submit_final(client, record, accounts, att)
    owed = client.call(registry.functions.owed(pid))

    client.transact(registry.functions.fund(pid, owed // 2), operator)

    hostile = client.contract(test_artifacts["HostileDistributor"], hostile_address)
    assert client.call(hostile.functions.reentrySucceeded()) is False
    assert client.call(hostile.functions.reentryError())[:4] == REENTRANT_CALL
    assert client.call(hostile.functions.distributed()) == owed // 2
    assert client.call(registry.functions.owed(pid)) == owed - owed // 2


def test_pool_token_must_pay_in_the_registry_stablecoin(
    client, record, accounts, contracts, test_artifacts
):
    admin = accounts.admin
    coin_address, _ = client.deploy(test_artifacts["HookedStablecoin"], [], admin)
    token_address, _ = client.deploy(
        "RevenueShareToken",
        [
            "Other coin pool",
            "OC",
            keccak(text="other"),
            coin_address,
            record.address("InvestorRegistry"),
            admin.address,
            admin.address,
            contracts.registry.address,
            [accounts.investors[0].address],
            [10**18],
        ],
        admin,
    )
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(
            contracts.registry.functions.registerPool(keccak(text="other"), token_address, 100, 2),
            admin,
        )
    assert excinfo.value.error_name == "TokenStablecoinMismatch"
