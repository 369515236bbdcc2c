"""Ape test suite (run by tests/contracts/test_ape_suite.py with `ape test` in a copy of the
project, on an Anvil started by ape-foundry). Named so plain pytest does not collect it."""

import ape
import pytest
from eth_utils import keccak

from gridshare.core.chain.accounts import ChainAccount
from gridshare.core.chain.attestation import (
    Attestation,
    SigningContext,
    investor_amount,
    ordered_signatures,
    sign_attestation,
)

POOL_ID = keccak(text="charging-pile-1")
SHARE_BPS = 5_000
CHALLENGE_SECONDS = 60


@pytest.fixture
def admin(accounts):
    return accounts[0]


@pytest.fixture
def operator(accounts):
    return accounts[1]


@pytest.fixture
def oracles(accounts):
    return sorted(accounts[2:7], key=lambda a: int(a.address, 16))


@pytest.fixture
def investors(accounts):
    return accounts[7:10]


@pytest.fixture
def system(project, admin, operator, oracles, investors, chain):
    coin = admin.deploy(project.TestStablecoin, admin)
    kyc = admin.deploy(project.InvestorRegistry, admin, admin)
    for investor in investors:
        kyc.admit(investor, chain.pending_timestamp + 10**8, sender=admin)
    registry = admin.deploy(
        project.AttestationRegistry,
        admin,
        operator,
        coin,
        [o.address for o in oracles],
        3,
        CHALLENGE_SECONDS,
    )
    token = admin.deploy(
        project.RevenueShareToken,
        "Pool",
        "GSCP1",
        POOL_ID,
        coin,
        kyc,
        admin,
        operator,
        registry,
        [i.address for i in investors],
        [10**18, 2 * 10**18, 3 * 10**18],
    )
    registry.registerPool(POOL_ID, token, SHARE_BPS, 2, sender=admin)
    coin.mint(operator, 10**15, sender=admin)
    coin.approve(registry, 2**256 - 1, sender=operator)
    return coin, kyc, registry, token


def attestation(revenue: int) -> Attestation:
    return Attestation(
        POOL_ID,
        1,
        86_400,
        2 * 86_400,
        5_000,
        revenue,
        investor_amount(revenue, SHARE_BPS),
        3,
        keccak(b"root"),
    )


def signatures(att, signers, registry, chain_id):
    keys = [ChainAccount(s.address, s.private_key) for s in signers]
    ctx = SigningContext(
        chain_id, registry.address, registry.oracleSetVersion(), registry.vetoes(att.pool_id)
    )
    return ordered_signatures(sign_attestation(att, k, ctx) for k in keys)


def test_attest_fund_claim(system, operator, oracles, investors, chain):
    coin, _, registry, token = system
    att = attestation(600_000)
    registry.submit(
        att.as_tuple(), signatures(att, oracles[:3], registry, chain.chain_id), sender=operator
    )
    assert registry.epochStatus(POOL_ID, 1) == 1
    with ape.reverts(registry.FundingExceedsOwed):
        registry.fund(POOL_ID, att.investor_amount, sender=operator)
    chain.pending_timestamp += CHALLENGE_SECONDS
    chain.mine()
    assert registry.owed(POOL_ID) == att.investor_amount
    registry.fund(POOL_ID, att.investor_amount, sender=operator)
    assert registry.owed(POOL_ID) == 0
    assert token.totalFunded() == att.investor_amount
    third = investors[2]
    due = token.claimable(third)
    assert att.investor_amount // 2 - 1 <= due <= att.investor_amount // 2
    token.claim(sender=third)
    assert coin.balanceOf(third) == due


def test_below_threshold_reverts_with_custom_error(system, operator, oracles, chain):
    _, _, registry, _ = system
    att = attestation(100)
    with ape.reverts(registry.BelowThreshold):
        registry.submit(
            att.as_tuple(), signatures(att, oracles[:2], registry, chain.chain_id), sender=operator
        )


def test_transfer_to_outsider_reverts(system, investors):
    _, _, registry, token = system
    with ape.reverts(token.InvestorNotAllowed):
        token.transfer(registry, 1, sender=investors[0])


def test_veto_in_window_and_frozen_holder(system, admin, operator, oracles, investors, chain):
    _, _, registry, token = system
    att = attestation(1_000)
    registry.submit(
        att.as_tuple(), signatures(att, oracles[:3], registry, chain.chain_id), sender=operator
    )
    registry.veto(POOL_ID, 1, keccak(text="reason"), sender=oracles[0])
    assert registry.epochStatus(POOL_ID, 1) == 3
    assert registry.latestEpoch(POOL_ID) == 0
    token.freeze(investors[0], sender=admin)
    with ape.reverts(token.AccountFrozen):
        token.transfer(investors[1], 1, sender=investors[0])
