"""RevenueShareToken, funding through the registry, KYC allow-list, device registry, roles."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from gridshare.core.chain.pools import TOKEN_SUPPLY
from gridshare.core.errors import ContractRevert
from gridshare.core.ids import text_id
from tests.contracts.conftest import POOL, make_attestation, submit_final

ONE_TOKEN = 10**18


def refused(excinfo: pytest.ExceptionInfo[ContractRevert]) -> str:
    return excinfo.value.error_name


@pytest.fixture
def attested(client, record, accounts, pool):
    """The pool with one final attestation: 1,000,000 cents revenue, half to investors."""
    att, _, _ = make_attestation(revenue=1_000_000)
    submit_final(client, record, accounts, att)
    return att.investor_amount


def test_issuance(client, accounts, token):
    balances = [client.call(token.functions.balanceOf(i.address)) for i in accounts.investors]
    assert sum(balances) == TOKEN_SUPPLY == client.call(token.functions.totalSupply())
    assert client.call(token.functions.poolId()) == text_id(POOL)


def test_fund_distributes_pro_rata(client, accounts, contracts, token, attested):
    pid = text_id(POOL)
    client.transact(contracts.registry.functions.fund(pid, attested), accounts.operator)
    assert client.call(contracts.registry.functions.owed(pid)) == 0
    assert client.call(contracts.registry.functions.funded(pid)) == attested
    assert client.call(token.functions.totalFunded()) == attested
    total = 0
    for investor in accounts.investors:
        share = client.call(token.functions.claimable(investor.address))
        assert attested // 3 - 1 <= share <= attested // 3 + 1
        before = client.call(contracts.coin.functions.balanceOf(investor.address))
        client.transact(token.functions.claim(), investor)
        after = client.call(contracts.coin.functions.balanceOf(investor.address))
        assert after - before == share
        assert client.call(token.functions.claimed(investor.address)) == share
        total += share
    assert total <= attested
    funded = contracts.registry.events.Funded().get_logs(from_block=0)
    assert funded[-1]["args"]["amount"] == attested


def test_partial_funding_leaves_owed(client, accounts, contracts, attested):
    pid = text_id(POOL)
    client.transact(contracts.registry.functions.fund(pid, attested // 4), accounts.operator)
    owed = client.call(contracts.registry.functions.owed(pid))
    assert owed == attested - attested // 4
    assert client.call(contracts.registry.functions.attested(pid)) == attested


def test_funding_refusals(client, accounts, contracts, attested):
    reg = contracts.registry.functions
    pid = text_id(POOL)
    cases = [
        (reg.fund(pid, attested + 1), "FundingExceedsOwed"),
        (reg.fund(pid, 0), "ZeroAmount"),
        (reg.fund(text_id("nope"), 1), "PoolNotRegistered"),
    ]
    for fn, error in cases:
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(fn, accounts.operator)
        assert refused(excinfo) == error


def test_transfer_keeps_earned_revenue_with_the_earner(
    client, accounts, contracts, token, attested
):
    alice, bob, _ = accounts.investors
    client.transact(contracts.registry.functions.fund(text_id(POOL), attested), accounts.operator)
    before = [client.call(token.functions.claimable(a.address)) for a in (alice, bob)]
    client.transact(token.functions.transfer(bob.address, 10 * ONE_TOKEN), alice)
    after = [client.call(token.functions.claimable(a.address)) for a in (alice, bob)]
    assert before == after


def test_nothing_to_claim(client, accounts, token):
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(token.functions.claim(), accounts.investors[0])
    assert refused(excinfo) == "NothingToClaim"


def test_transfer_to_non_allow_listed_refused(client, accounts, token, outsider):
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(
            token.functions.transfer(outsider.address, ONE_TOKEN), accounts.investors[0]
        )
    assert refused(excinfo) == "InvestorNotAllowed"
    assert excinfo.value.error_args[0].lower() == outsider.address.lower()


def test_transfer_from_removed_investor_refused(client, accounts, contracts, token):
    alice, bob, _ = accounts.investors
    client.transact(contracts.kyc.functions.remove(alice.address), accounts.kyc_agent)
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(token.functions.transfer(bob.address, ONE_TOKEN), alice)
    assert refused(excinfo) == "InvestorNotAllowed"


def test_expired_investor_refused(client, accounts, contracts, token, outsider):
    kyc = contracts.kyc.functions
    now = client.w3.eth.get_block("latest")["timestamp"]
    client.transact(kyc.admit(outsider.address, now + 100), accounts.kyc_agent)
    client.transact(token.functions.transfer(outsider.address, ONE_TOKEN), accounts.investors[0])
    client.w3.provider.make_request("evm_increaseTime", [200])
    client.w3.provider.make_request("evm_mine", [])
    assert not client.call(kyc.isAllowed(outsider.address))
    for fn, sender in (
        (token.functions.transfer(accounts.investors[0].address, 1), outsider),
        (token.functions.transfer(outsider.address, 1), accounts.investors[0]),
    ):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(fn, sender)
        assert refused(excinfo) == "InvestorNotAllowed"


def test_kyc_refusals(client, accounts, contracts, outsider):
    kyc = contracts.kyc.functions
    now = client.w3.eth.get_block("latest")["timestamp"]
    for fn, error in (
        (kyc.admit(outsider.address, now - 1), "ExpiryInPast"),
        (kyc.admit("0x" + "00" * 20, now + 100), "ZeroAddress"),
        (kyc.remove(outsider.address), "NotAdmitted"),
    ):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(fn, accounts.kyc_agent)
        assert refused(excinfo) == error


def test_paused_transfers_refused_claims_still_work(client, accounts, contracts, token, attested):
    alice, bob, _ = accounts.investors
    client.transact(contracts.registry.functions.fund(text_id(POOL), attested), accounts.operator)
    client.transact(token.functions.pause(), accounts.operator)
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(token.functions.transfer(bob.address, ONE_TOKEN), alice)
    assert refused(excinfo) == "EnforcedPause"
    client.transact(token.functions.claim(), alice)
    client.transact(token.functions.unpause(), accounts.operator)
    client.transact(token.functions.transfer(bob.address, ONE_TOKEN), alice)


def test_device_registry(client, accounts, contracts, outsider):
    dev = contracts.devices.functions
    op = accounts.operator
    key, pid = text_id("cp-000001"), text_id(POOL)
    client.transact(dev.register(key, accounts.oracles[0].address, pid), op)
    assert client.call(dev.device(key)) == [accounts.oracles[0].address, pid, True]
    client.transact(dev.rotateKey(key, outsider.address), op)
    assert client.call(dev.device(key))[0] == outsider.address
    client.transact(dev.deactivate(key), op)
    assert client.call(dev.device(key))[2] is False
    unknown = text_id("cp-999999")
    for fn, error in (
        (dev.register(key, outsider.address, pid), "DeviceAlreadyRegistered"),
        (dev.rotateKey(key, accounts.admin.address), "DeviceInactive"),
        (dev.deactivate(key), "DeviceInactive"),
        (dev.rotateKey(unknown, outsider.address), "DeviceUnknown"),
        (dev.deactivate(unknown), "DeviceUnknown"),
        (dev.register(unknown, "0x" + "00" * 20, pid), "ZeroAddress"),
        (dev.register(b"\0" * 32, outsider.address, pid), "ZeroId"),
        (dev.registerBatch([unknown], [], [pid]), "LengthMismatch"),
    ):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(fn, op)
        assert refused(excinfo) == error
    kinds = {
        "DeviceRegistered": contracts.devices.events.DeviceRegistered,
        "DeviceKeyRotated": contracts.devices.events.DeviceKeyRotated,
        "DeviceDeactivated": contracts.devices.events.DeviceDeactivated,
    }
    for event in kinds.values():
        assert event().get_logs(from_block=0)


def test_stablecoin(client, accounts, contracts):
    assert client.call(contracts.coin.functions.decimals()) == 6
    assert client.call(contracts.coin.functions.symbol()) == "gHKD"
    assert client.call(contracts.coin.functions.name()) == "Gridshare Test HKD"


def test_every_privileged_function_refuses_other_roles(
    client, accounts, contracts, token, outsider, attested
):
    reg, dev, kyc, coin = (
        contracts.registry.functions,
        contracts.devices.functions,
        contracts.kyc.functions,
        contracts.coin.functions,
    )
    pid, key = text_id(POOL), text_id("cp-000001")
    oracles = [o.address for o in accounts.oracles[:3]]
    privileged = {
        "coin.mint": coin.mint(outsider.address, 1),
        "kyc.admit": kyc.admit(outsider.address, 2**40),
        "kyc.remove": kyc.remove(accounts.investors[0].address),
        "devices.register": dev.register(key, outsider.address, pid),
        "devices.registerBatch": dev.registerBatch([key], [outsider.address], [pid]),
        "devices.rotateKey": dev.rotateKey(key, outsider.address),
        "devices.deactivate": dev.deactivate(key),
        "registry.setOracles": reg.setOracles(oracles, 2),
        "registry.registerPool": reg.registerPool(keccak(text="x"), token.address, 100, 2),
        "registry.fund": reg.fund(pid, 1),
        "registry.grantRole": reg.grantRole(b"\0" * 32, outsider.address),
        "token.pause": token.functions.pause(),
        "token.unpause": token.functions.unpause(),
        "token.distribute": token.functions.distribute(1),
    }
    # the investors hold no role at all; the operator is not admin; the admin not operator
    wrong = {
        "coin.mint": [accounts.operator, outsider],
        "kyc.admit": [accounts.operator, outsider],
        "kyc.remove": [accounts.operator, outsider],
        "registry.setOracles": [accounts.operator, outsider],
        "registry.registerPool": [accounts.operator, outsider],
        "registry.grantRole": [accounts.operator, outsider],
        "registry.fund": [accounts.admin, accounts.investors[0]],
        "token.distribute": [accounts.admin, accounts.operator],
    }
    for name, fn in privileged.items():
        for sender in wrong.get(name, [outsider, accounts.investors[0]]):
            with pytest.raises(ContractRevert) as excinfo:
                client.transact(fn, sender)
            assert refused(excinfo) == "AccessControlUnauthorizedAccount", name
