"""The challenge window, vetoes, finality, oracle-set versions, submit checks and funding of
what is final (with a fee-on-transfer coin)."""

from __future__ import annotations

import dataclasses

import pytest
from eth_utils import keccak
from web3.logs import DISCARD

from gridshare.core.chain.attestation import investor_amount, sign_attestation, signing_context
from gridshare.core.errors import ContractRevert
from gridshare.core.ids import text_id
from tests.contracts.conftest import (
    CHALLENGE_SECONDS,
    POOL,
    SHARE_BPS,
    advance,
    chain_now,
    make_attestation,
    sign_by,
    submit,
)

NONE, PENDING, FINAL, VETOED = 0, 1, 2, 3
PID = text_id(POOL)


def refused(excinfo: pytest.ExceptionInfo[ContractRevert]) -> str:
    return excinfo.value.error_name


def status(client, contracts, epoch: int) -> int:
    return client.call(contracts.registry.functions.epochStatus(PID, epoch))


def three_epochs(client, record, accounts):
    atts = []
    start = None
    for epoch in (1, 2, 3):
        att, _, _ = make_attestation(epoch=epoch, start=start, revenue=100 * epoch)
        submit(client, record, accounts, att)
        atts.append(att)
        start = att.period_end
    return atts


def test_pending_then_final(client, record, accounts, contracts, pool):
    reg = contracts.registry.functions
    att, _, _ = make_attestation()
    assert status(client, contracts, 1) == NONE
    submit(client, record, accounts, att)
    ends = client.call(reg.challengeEnds(PID, 1))
    assert ends == chain_now(client) + CHALLENGE_SECONDS
    assert status(client, contracts, 1) == PENDING
    assert client.call(reg.finalizedEpoch(PID)) == 0
    assert client.call(reg.owed(PID)) == 0
    assert client.call(reg.pendingAmount(PID)) == att.investor_amount
    advance(client, CHALLENGE_SECONDS)
    assert status(client, contracts, 1) == FINAL
    assert client.call(reg.finalizedEpoch(PID)) == 1
    assert client.call(reg.owed(PID)) == att.investor_amount
    assert client.call(reg.pendingAmount(PID)) == 0
    receipt = client.transact(reg.settle(PID), accounts.operator)
    events = contracts.registry.events.EpochFinalized().process_receipt(receipt)
    assert [e["args"]["epoch"] for e in events] == [1]


def test_accepted_event_carries_the_figures(client, record, accounts, contracts, pool):
    att, _, _ = make_attestation(revenue=4_321, devices=6)
    submit(client, record, accounts, att)
    args = contracts.registry.events.AttestationAccepted().get_logs(from_block=0)[-1]["args"]
    assert (args["revenueMinor"], args["energyWh"], args["deviceCount"]) == (4_321, 10_000, 6)
    assert args["investorAmount"] == att.investor_amount
    assert args["challengeEnds"] == chain_now(client) + CHALLENGE_SECONDS


def test_veto_in_the_window_voids_later_epochs_then_resubmit(
    client, record, accounts, contracts, pool
):
    reg = contracts.registry.functions
    first, second, third = three_epochs(client, record, accounts)
    advance(client, CHALLENGE_SECONDS)  # three final epochs, then two pending ones
    fourth, _, _ = make_attestation(epoch=4, start=third.period_end, revenue=400)
    submit(client, record, accounts, fourth)
    fifth, _, _ = make_attestation(epoch=5, start=fourth.period_end, revenue=500)
    submit(client, record, accounts, fifth)
    reason = keccak(text="meter 7 misread")
    receipt = client.transact(reg.veto(PID, 4, reason), accounts.guardian)
    vetoed = contracts.registry.events.EpochVetoed().process_receipt(receipt)
    assert [(e["args"]["epoch"], e["args"]["reasonHash"]) for e in vetoed] == [
        (4, reason),
        (5, reason),
    ]
    assert [status(client, contracts, e) for e in (3, 4, 5)] == [FINAL, VETOED, VETOED]
    assert client.call(reg.latestEpoch(PID)) == 3
    assert client.call(reg.vetoes(PID)) == 1
    assert not client.call(reg.verifyLeaf(PID, 4, b"\0" * 32, []))
    # The old signatures are void (the veto count is in the digest); fresh ones are accepted,
    # same numbers.
    registry = record.address("AttestationRegistry")
    old_ctx = dataclasses.replace(signing_context(client, registry, PID), pool_vetoes=0)
    stale = [sign_attestation(fourth, o, old_ctx) for o in accounts.oracles[:3]]
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(
            reg.submit(
                fourth.as_tuple(), [s for _, s in sorted(stale, key=lambda x: int(x[0], 16))]
            ),
            accounts.operator,
        )
    assert refused(excinfo) == "UnknownSigner"
    submit(client, record, accounts, fourth)
    assert status(client, contracts, 4) == PENDING
    assert status(client, contracts, 5) == VETOED
    advance(client, CHALLENGE_SECONDS)
    owed = sum(a.investor_amount for a in (first, second, third, fourth))
    assert client.call(reg.owed(PID)) == owed


def test_a_current_oracle_may_veto_an_outsider_may_not(
    client, record, accounts, contracts, pool, outsider
):
    reg = contracts.registry.functions
    att, _, _ = make_attestation()
    submit(client, record, accounts, att)
    for who in (outsider, accounts.operator):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(reg.veto(PID, 1, b"\0" * 32), who)
        assert refused(excinfo) == "NotGuardianOrOracle"
    client.transact(reg.veto(PID, 1, b"\0" * 32), accounts.oracles[4])
    assert status(client, contracts, 1) == VETOED


def test_no_veto_after_the_window_and_no_way_back_from_final(
    client, record, accounts, contracts, pool
):
    reg = contracts.registry.functions
    first, _, _ = make_attestation(epoch=1)
    submit(client, record, accounts, first)
    advance(client, CHALLENGE_SECONDS)
    second, _, _ = make_attestation(epoch=2, start=first.period_end)
    submit(client, record, accounts, second)
    for epoch, expected in ((1, FINAL), (3, NONE)):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(reg.veto(PID, epoch, b"\0" * 32), accounts.guardian)
        assert refused(excinfo) == "NotPending"
        assert excinfo.value.error_args[2] == expected
    # Vetoing the pending epoch 2 leaves epoch 1 final; shortening the window or resubmitting
    # cannot touch it either.
    client.transact(reg.veto(PID, 2, b"\0" * 32), accounts.guardian)
    client.transact(reg.setChallengePeriod(7 * 86400), accounts.admin)
    assert status(client, contracts, 1) == FINAL
    with pytest.raises(ContractRevert) as excinfo:
        submit(client, record, accounts, first)
    assert refused(excinfo) == "UnexpectedEpoch"
    assert client.call(reg.finalizedEpoch(PID)) == 1
    vetoed = client.call(reg.vetoes(PID))
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(reg.veto(PID, 1, b"\0" * 32), accounts.oracles[0])
    assert refused(excinfo) == "NotPending"
    assert client.call(reg.vetoes(PID)) == vetoed


def test_windows_end_in_epoch_order_when_the_period_is_shortened(
    client, record, accounts, contracts, pool
):
    reg = contracts.registry.functions
    client.transact(reg.setChallengePeriod(3600), accounts.admin)
    first, _, _ = make_attestation(epoch=1)
    submit(client, record, accounts, first)
    client.transact(reg.setChallengePeriod(60), accounts.admin)
    second, _, _ = make_attestation(epoch=2, start=first.period_end)
    submit(client, record, accounts, second)
    assert client.call(reg.challengeEnds(PID, 2)) == client.call(reg.challengeEnds(PID, 1))
    advance(client, 120)
    assert [status(client, contracts, e) for e in (1, 2)] == [PENDING, PENDING]


def test_challenge_period_bounds(client, accounts, contracts):
    reg = contracts.registry.functions
    assert client.call(reg.challengePeriod()) == CHALLENGE_SECONDS
    for seconds in (59, 7 * 86400 + 1):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(reg.setChallengePeriod(seconds), accounts.admin)
        assert refused(excinfo) == "ChallengePeriodOutOfBounds"
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(reg.setChallengePeriod(3600), accounts.operator)
    assert refused(excinfo) == "AccessControlUnauthorizedAccount"


def test_fund_before_finality_refused(client, record, accounts, contracts, pool):
    reg = contracts.registry.functions
    att, _, _ = make_attestation(revenue=1_000)
    submit(client, record, accounts, att)
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(reg.fund(PID, att.investor_amount), accounts.operator)
    assert refused(excinfo) == "FundingExceedsOwed"
    assert excinfo.value.error_args == (0, att.investor_amount)
    advance(client, CHALLENGE_SECONDS)
    client.transact(reg.fund(PID, att.investor_amount), accounts.operator)
    assert client.call(reg.owed(PID)) == 0
    assert client.call(reg.funded(PID)) == att.investor_amount


def test_future_period_end_refused(client, record, accounts, pool):
    now = chain_now(client)
    att, _, _ = make_attestation(epoch=1, start=now - 3600, end=now + 3600)
    with pytest.raises(ContractRevert) as excinfo:
        submit(client, record, accounts, att)
    assert refused(excinfo) == "PeriodNotEnded"


def test_a_token_backs_one_pool(client, accounts, contracts, pool):
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(
            contracts.registry.functions.registerPool(text_id("other"), pool.token, 100, 2),
            accounts.admin,
        )
    assert refused(excinfo) == "TokenAlreadyRegistered"


def test_re_added_oracle_old_signature_refused(client, record, accounts, contracts, pool):
    """A removed key's signature (made before its removal) never counts again."""
    reg = contracts.registry.functions
    registry = record.address("AttestationRegistry")
    att, _, _ = make_attestation()
    before = sign_by(att, accounts.oracles[:3], client, registry)
    addresses = sorted((o.address for o in accounts.oracles), key=lambda a: int(a, 16))
    version = client.call(reg.oracleSetVersion())
    client.transact(reg.setOracles(addresses[1:], 3), accounts.admin)
    client.transact(reg.setOracles(addresses, 3), accounts.admin)
    assert client.call(reg.oracleSetVersion()) == version + 2
    events = contracts.registry.events.OracleSetChanged().get_logs(from_block=0)
    assert events[-1]["args"]["version"] == version + 2
    with pytest.raises(ContractRevert) as excinfo:
        submit_signed(client, contracts, accounts, att, before)
    assert refused(excinfo) == "UnknownSigner"
    submit_signed(
        client, contracts, accounts, att, sign_by(att, accounts.oracles[:3], client, registry)
    )


def submit_signed(client, contracts, accounts, att, signatures):
    ordered = [s for _, s in sorted(signatures, key=lambda x: int(x[0], 16))]
    client.transact(contracts.registry.functions.submit(att.as_tuple(), ordered), accounts.operator)


@pytest.mark.parametrize(
    ("revenue", "bps", "exponent", "decimals", "expected"),
    [
        (123, 5_000, 2, 6, 615_000),  # HKD cents, 6-decimal coin: revenue x bps
        (123, 5_000, 0, 6, 61_500_000),  # JPY (no minor unit)
        (12_345, 3_333, 3, 6, 4_114_588),  # KWD mils: floor(12345 x 3333 / 10)
        (99, 7_000, 2, 2, 69),  # a 2-decimal coin: floor(99 x 0.7)
        (1, 1, 4, 6, 0),  # below one coin unit: rounded down, never over-paid
    ],
)
def test_investor_amount_rounds_down(revenue, bps, exponent, decimals, expected):
    assert investor_amount(revenue, bps, exponent, decimals) == expected


def test_registry_requires_the_same_figure(client, record, accounts, contracts, pool):
    reg = contracts.registry.functions
    for revenue in (0, 1, 99, 123_456_789):
        assert client.call(reg.investorShare(PID, revenue)) == investor_amount(revenue, SHARE_BPS)


def test_fee_on_transfer_coin_distributes_what_arrived(client, record, accounts, test_artifacts):
    """A registry paying in a coin that burns 1% of each transfer: funded is what arrived."""
    admin, operator = accounts.admin, accounts.operator
    coin_address, _ = client.deploy(test_artifacts["FeeOnTransferStablecoin"], [100], admin)
    coin = client.contract(test_artifacts["FeeOnTransferStablecoin"], coin_address)
    oracles = sorted((o.address for o in accounts.oracles), key=lambda a: int(a, 16))
    registry_address, _ = client.deploy(
        "AttestationRegistry",
        [admin.address, operator.address, coin_address, oracles, 3, CHALLENGE_SECONDS],
        admin,
    )
    registry = client.contract("AttestationRegistry", registry_address)
    investors = [i.address for i in accounts.investors]
    token_address, _ = client.deploy(
        "RevenueShareToken",
        [
            "Fee pool",
            "FP",
            PID,
            coin_address,
            record.address("InvestorRegistry"),
            admin.address,
            operator.address,
            registry_address,
            investors,
            [10**18] * len(investors),
        ],
        admin,
    )
    client.transact(registry.functions.registerPool(PID, token_address, SHARE_BPS, 2), admin)
    att, _, _ = make_attestation(revenue=1_000_000)
    sigs = sign_by(att, accounts.oracles[:3], client, registry_address)
    client.transact(
        registry.functions.submit(
            att.as_tuple(), [s for _, s in sorted(sigs, key=lambda x: int(x[0], 16))]
        ),
        operator,
    )
    advance(client, CHALLENGE_SECONDS)
    client.transact(coin.functions.mint(operator.address, 10**15), admin)
    client.transact(coin.functions.approve(registry_address, 2**256 - 1), operator)
    owed = client.call(registry.functions.owed(PID))
    receipt = client.transact(registry.functions.fund(PID, owed), operator)
    arrived = owed - owed // 100
    token = client.contract("RevenueShareToken", token_address)
    assert client.call(token.functions.totalFunded()) == arrived
    assert client.call(coin.functions.balanceOf(token_address)) == arrived
    assert client.call(registry.functions.funded(PID)) == arrived
    assert client.call(registry.functions.owed(PID)) == owed - arrived
    funded = registry.events.Funded().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (funded["amount"], funded["owedAfter"]) == (arrived, owed - arrived)
    claimable = sum(client.call(token.functions.claimable(i)) for i in investors)
    assert arrived - len(investors) <= claimable <= arrived


def test_coins_with_too_many_decimals_refused(client, record, accounts, pool):
    """An 18-decimal ERC-20 (a pool token is one) cannot be the registry's coin."""
    admin = accounts.admin
    with pytest.raises(ContractRevert) as excinfo:
        client.deploy(
            "AttestationRegistry",
            [admin.address, admin.address, pool.token, [admin.address], 1, CHALLENGE_SECONDS],
            admin,
        )
    assert refused(excinfo) == "UnsupportedDecimals"
