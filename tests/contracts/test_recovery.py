"""The agent's recovery kit on RevenueShareToken: freeze, unfreeze, forced transfer and
wallet recovery, with the entitlement moved exactly; and the commands that drive it."""

from __future__ import annotations

from datetime import date

import pytest

from gridshare.core.chain.accounts import derive_account
from gridshare.core.chain.servicing import Servicing
from gridshare.core.errors import ContractRevert, GridshareError
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from tests.contracts.conftest import POOL, make_attestation, submit, submit_final

ONE_TOKEN = 10**18


def refused(excinfo: pytest.ExceptionInfo[ContractRevert]) -> str:
    return excinfo.value.error_name


@pytest.fixture
def funded(client, record, accounts, contracts, pool):
    """One final epoch, funded in full: every investor has something to claim."""
    att, _, _ = make_attestation(revenue=1_000_003)
    submit_final(client, record, accounts, att)
    client.transact(
        contracts.registry.functions.fund(text_id(POOL), att.investor_amount), accounts.operator
    )
    return att.investor_amount


@pytest.fixture
def servicing(chain_settings, client, pool) -> Servicing:
    return Servicing(chain_settings, client)


@pytest.fixture
def replacement(client, accounts, servicing):
    """A fresh wallet, allow-listed through the `agent allow` path."""
    fresh = derive_account(Settings().mnemonic, 17)
    servicing.allow(fresh.address, date(2099, 12, 31))
    return fresh


def fund_more(client, record, accounts, contracts, epoch: int, start: int) -> int:
    att, _, _ = make_attestation(epoch=epoch, start=start, revenue=777_777)
    submit_final(client, record, accounts, att)
    client.transact(
        contracts.registry.functions.fund(text_id(POOL), att.investor_amount), accounts.operator
    )
    return att.investor_amount


def test_frozen_holder_cannot_transfer_or_claim_but_keeps_accruing(
    client, record, accounts, contracts, token, funded, servicing
):
    alice, bob = accounts.investors[0], accounts.investors[1]
    fns = token.functions
    servicing.freeze(alice.address, frozen=True)
    assert client.call(fns.isFrozen(alice.address))
    assert servicing.freeze(alice.address, frozen=True) == []  # already frozen: nothing sent
    before = client.call(fns.claimable(alice.address))
    for action in (fns.claim(), fns.transfer(bob.address, 1)):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(action, alice)
        assert refused(excinfo) == "AccountFrozen"
    client.transact(fns.approve(bob.address, ONE_TOKEN), alice)
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(fns.transferFrom(alice.address, bob.address, 1), bob)
    assert refused(excinfo) == "AccountFrozen"
    # Receiving is allowed; revenue keeps accruing while frozen.
    client.transact(fns.transfer(alice.address, ONE_TOKEN), bob)
    end = make_attestation()[0].period_end
    fund_more(client, record, accounts, contracts, 2, end)
    accrued = client.call(fns.claimable(alice.address))
    assert accrued > before
    servicing.freeze(alice.address, frozen=False)
    client.transact(fns.claim(), alice)
    assert client.call(fns.claimed(alice.address)) == accrued


def test_forced_transfer_moves_tokens_not_earned_revenue(
    client, accounts, token, funded, servicing, replacement
):
    alice = accounts.investors[0]
    fns = token.functions
    servicing.freeze(alice.address, frozen=True)
    balance = client.call(fns.balanceOf(alice.address))
    earned = client.call(fns.claimable(alice.address))
    servicing.force_transfer(POOL, alice.address, replacement.address, balance // 2)
    assert client.call(fns.balanceOf(replacement.address)) == balance // 2
    assert client.call(fns.balanceOf(alice.address)) == balance - balance // 2
    assert client.call(fns.claimable(alice.address)) == earned
    assert client.call(fns.claimable(replacement.address)) == 0


def test_forced_transfer_needs_an_allow_listed_receiver_and_the_agent(
    client, accounts, token, funded, outsider
):
    alice = accounts.investors[0]
    fns = token.functions
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(fns.forcedTransfer(alice.address, outsider.address, 1), accounts.agent)
    assert refused(excinfo) == "InvestorNotAllowed"
    bob = accounts.investors[1]
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(fns.forcedTransfer(alice.address, bob.address, 1), accounts.operator)
    assert refused(excinfo) == "AccessControlUnauthorizedAccount"


def test_recovery_moves_balance_entitlement_and_freeze_exactly(
    client, record, accounts, contracts, token, funded, servicing, replacement
):
    alice, bob = accounts.investors[0], accounts.investors[1]
    fns = token.functions
    client.transact(fns.claim(), bob)
    servicing.freeze(alice.address, frozen=True)
    balance = client.call(fns.balanceOf(alice.address))
    entitlement = client.call(fns.claimable(alice.address))
    total_before = sum(
        client.call(fns.claimable(i.address)) + client.call(fns.claimed(i.address))
        for i in accounts.investors
    )
    sent = servicing.recover(alice.address, replacement.address)
    assert len(sent) == 1
    assert client.call(fns.balanceOf(replacement.address)) == balance
    assert client.call(fns.balanceOf(alice.address)) == 0
    assert client.call(fns.claimable(replacement.address)) == entitlement
    assert client.call(fns.claimable(alice.address)) == 0
    assert client.call(fns.isFrozen(replacement.address))
    assert client.call(fns.isLost(alice.address))
    holders = [replacement, *accounts.investors[1:]]
    total_after = sum(
        client.call(fns.claimable(h.address)) + client.call(fns.claimed(h.address)) for h in holders
    )
    assert total_after == total_before
    # The lost wallet is blocked for good; the replacement claims once unfrozen.
    for action, who in (
        (fns.transfer(alice.address, 1), bob),
        (fns.claim(), alice),
    ):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(action, who)
        assert refused(excinfo) == "AccountLost"
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(fns.freeze(alice.address), accounts.agent)
    assert refused(excinfo) == "AccountLost"
    assert servicing.recover(alice.address, replacement.address) == []
    servicing.freeze(replacement.address, frozen=False)
    client.transact(fns.claim(), replacement)
    assert client.call(fns.claimed(replacement.address)) == entitlement


def test_recovery_refusals(client, accounts, token, funded, outsider, servicing):
    alice = accounts.investors[0]
    fns = token.functions
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(fns.recoverWallet(alice.address, outsider.address), accounts.agent)
    assert refused(excinfo) == "InvestorNotAllowed"
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(fns.recoverWallet(alice.address, alice.address), accounts.agent)
    assert refused(excinfo) == "SameAddress"
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(fns.unfreeze(alice.address), accounts.agent)
    assert refused(excinfo) == "NotFrozen"
    with pytest.raises(GridshareError):
        servicing.freeze("0x123", frozen=True)


def test_agent_moves_work_while_paused(client, accounts, token, funded, servicing, replacement):
    alice = accounts.investors[0]
    client.transact(token.functions.pause(), accounts.operator)
    servicing.recover(alice.address, replacement.address)
    assert client.call(token.functions.balanceOf(alice.address)) == 0


def test_allow_and_disallow(client, contracts, servicing, outsider):
    kyc = contracts.kyc.functions
    servicing.allow(outsider.address, date(2099, 1, 31))
    assert client.call(kyc.expiryOf(outsider.address)) == 4_073_587_200  # 2099-02-01 00:00 UTC
    servicing.disallow(outsider.address)
    assert not client.call(kyc.isAllowed(outsider.address))


def test_guardian_veto_through_servicing(client, record, accounts, contracts, pool, servicing):
    att, _, _ = make_attestation()

    submit(client, record, accounts, att)
    servicing.veto(POOL, 1, "meters disagree with the site survey")
    assert client.call(contracts.registry.functions.epochStatus(text_id(POOL), 1)) == 3
