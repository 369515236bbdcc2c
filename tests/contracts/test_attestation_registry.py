"""AttestationRegistry: M-of-N EIP-712 attestations, epochs, periods, leaves, oracle rotation."""

from __future__ import annotations

import dataclasses

import pytest
from eth_utils import keccak

from gridshare.core.chain.attestation import (
    ordered_signatures,
    sign_attestation,
    signing_context,
    submit_attestation,
)
from gridshare.core.chain.merkle import verify
from gridshare.core.errors import ContractRevert
from gridshare.core.ids import text_id
from tests.contracts.conftest import (
    CHALLENGE_SECONDS,
    DAY,
    POOL,
    advance,
    make_attestation,
    sign_by,
    submit,
)


def refused(excinfo: pytest.ExceptionInfo[ContractRevert]) -> str:
    return excinfo.value.error_name


def test_digest_matches_contract(client, record, contracts, pool):
    att, _, _ = make_attestation()
    on_chain = client.call(contracts.registry.functions.hashAttestation(att.as_tuple()))
    registry = record.address("AttestationRegistry")
    assert on_chain == att.digest(signing_context(client, registry, att.pool_id))


def test_accepts_three_of_five_and_stores_it(client, record, accounts, contracts, pool):
    att, _, _ = make_attestation(revenue=1_000_000)
    submit(client, record, accounts, att)
    reg = contracts.registry.functions
    pid = text_id(POOL)
    assert client.call(reg.latestEpoch(pid)) == 1
    assert client.call(reg.owed(pid)) == 0  # pending: not owed before the window ends
    advance(client, CHALLENGE_SECONDS)
    assert client.call(reg.owed(pid)) == 1_000_000 * 5_000
    stored = client.call(reg.attestation(pid, 1))
    assert tuple(stored) == att.as_tuple()
    logs = contracts.registry.events.AttestationAccepted().get_logs(from_block=0)
    assert logs[-1]["args"]["epoch"] == 1


def test_contiguous_epochs_accumulate_owed(client, record, accounts, contracts, pool):
    first, _, _ = make_attestation(epoch=1, revenue=100)
    second, _, _ = make_attestation(epoch=2, start=first.period_end, revenue=300)
    submit(client, record, accounts, first)
    submit(client, record, accounts, second, n=5)
    advance(client, CHALLENGE_SECONDS)
    pid = text_id(POOL)
    assert client.call(contracts.registry.functions.latestEpoch(pid)) == 2
    assert client.call(contracts.registry.functions.owed(pid)) == 400 * 5_000


def test_verify_leaf(client, record, accounts, contracts, pool):
    att, tree, leaves = make_attestation(devices=7)
    submit(client, record, accounts, att)
    pid = text_id(POOL)
    for leaf in leaves:
        proof = tree.proof(leaf)
        assert verify(proof, tree.root, leaf)
        assert client.call(contracts.registry.functions.verifyLeaf(pid, 1, leaf, proof))
    forged = keccak(b"not a leaf")
    assert not client.call(
        contracts.registry.functions.verifyLeaf(pid, 1, forged, tree.proof(leaves[0]))
    )
    assert not client.call(
        contracts.registry.functions.verifyLeaf(pid, 2, leaves[0], tree.proof(leaves[0]))
    )


def _submit_raw(client, record, accounts, att, signatures):
    return submit_attestation(
        client, record.address("AttestationRegistry"), att, signatures, accounts.operator
    )


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("below_threshold", "BelowThreshold"),
        ("duplicate_signer", "DuplicateSigner"),
        ("unknown_signer", "UnknownSigner"),
        ("wrong_chain_id", "UnknownSigner"),
        ("wrong_contract", "UnknownSigner"),
        ("wrong_set_version", "UnknownSigner"),
        ("wrong_vetoes", "UnknownSigner"),
    ],
)
def test_signature_refusals(client, record, accounts, pool, outsider, case, error):
    att, _, _ = make_attestation()
    registry = record.address("AttestationRegistry")
    right = signing_context(client, registry, att.pool_id)
    oracles = accounts.oracles
    if case == "below_threshold":
        sigs = sign_by(att, oracles[:2], client, registry)
    elif case == "duplicate_signer":
        sigs = sign_by(att, oracles[:2], client, registry)
        sigs.append(sigs[0])
    elif case == "unknown_signer":
        sigs = sign_by(att, [*oracles[:2], outsider], client, registry)
    else:
        wrong = {
            "wrong_chain_id": dataclasses.replace(right, chain_id=1),
            "wrong_contract": dataclasses.replace(right, registry=record.address("DeviceRegistry")),
            "wrong_set_version": dataclasses.replace(right, oracle_set_version=2),
            "wrong_vetoes": dataclasses.replace(right, pool_vetoes=1),
        }[case]
        sigs = [sign_attestation(att, o, wrong) for o in oracles[:3]]
    with pytest.raises(ContractRevert) as excinfo:
        _submit_raw(client, record, accounts, att, sigs)
    assert refused(excinfo) == error


def test_signers_out_of_order_refused(client, record, accounts, contracts, pool):
    att, _, _ = make_attestation()
    registry = record.address("AttestationRegistry")
    sigs = sign_by(att, accounts.oracles[:3], client, registry)
    descending = list(reversed(ordered_signatures(sigs)))
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(
            contracts.registry.functions.submit(att.as_tuple(), descending), accounts.operator
        )
    assert refused(excinfo) == "SignersNotAscending"


def test_tampered_figures_refused(client, record, accounts, pool):
    att, _, _ = make_attestation()
    registry = record.address("AttestationRegistry")
    sigs = sign_by(att, accounts.oracles[:3], client, registry)
    tampered = dataclasses.replace(att, energy_wh=att.energy_wh + 1)
    with pytest.raises(ContractRevert) as excinfo:
        _submit_raw(client, record, accounts, tampered, sigs)
    assert refused(excinfo) == "UnknownSigner"


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("replayed_epoch", "UnexpectedEpoch"),
        ("skipped_epoch", "UnexpectedEpoch"),
        ("gap", "PeriodNotContiguous"),
        ("overlap", "PeriodNotContiguous"),
        ("empty_period", "EmptyPeriod"),
        ("investor_amount", "InvestorAmountMismatch"),
        ("unknown_pool", "PoolNotRegistered"),
    ],
)
def test_epoch_and_period_refusals(client, record, accounts, pool, case, error):
    first, _, _ = make_attestation(epoch=1)
    submit(client, record, accounts, first)
    end = first.period_end
    att = {
        "replayed_epoch": make_attestation(epoch=1)[0],
        "skipped_epoch": make_attestation(epoch=3, start=end)[0],
        "gap": make_attestation(epoch=2, start=end + 1)[0],
        "overlap": make_attestation(epoch=2, start=end - 3600)[0],
        "empty_period": make_attestation(epoch=2, start=end, end=end)[0],
        "investor_amount": dataclasses.replace(
            make_attestation(epoch=2, start=end)[0], investor_amount=1
        ),
        "unknown_pool": make_attestation(epoch=1, name="pv-plant-99")[0],
    }[case]
    with pytest.raises(ContractRevert) as excinfo:
        submit(client, record, accounts, att)
    assert refused(excinfo) == error


def test_epoch_one_accepts_any_start(client, record, accounts, contracts, pool):
    att, _, _ = make_attestation(epoch=1, start=12_345, end=12_345 + DAY)
    submit(client, record, accounts, att)
    assert client.call(contracts.registry.functions.latestEpoch(text_id(POOL))) == 1


def test_oracle_rotation(client, record, accounts, contracts, pool, outsider):
    admin = accounts.admin
    new_set = sorted([o.address for o in accounts.oracles[2:]] + [outsider.address])
    client.transact(contracts.registry.functions.setOracles(new_set, 3), admin)
    assert client.call(contracts.registry.functions.threshold()) == 3
    assert not client.call(contracts.registry.functions.isOracle(accounts.oracles[0].address))
    events = contracts.registry.events.OracleSetChanged().get_logs(from_block=0)
    assert list(events[-1]["args"]["oracles"]) == new_set
    att, _, _ = make_attestation()
    registry = record.address("AttestationRegistry")
    old = sign_by(att, accounts.oracles[:3], client, registry)
    with pytest.raises(ContractRevert) as excinfo:
        _submit_raw(client, record, accounts, att, old)
    assert refused(excinfo) == "UnknownSigner"
    new = sign_by(att, [*accounts.oracles[2:4], outsider], client, registry)
    _submit_raw(client, record, accounts, att, new)


@pytest.mark.parametrize(
    ("n", "threshold", "ok"),
    [
        (5, 3, True),
        (5, 4, True),
        (5, 5, False),
        (5, 2, False),
        (4, 3, True),
        (4, 2, False),
        (3, 2, True),
        (3, 3, False),
        (2, 2, True),
        (2, 1, False),
        (1, 1, True),
        (1, 0, False),
    ],
)
def test_threshold_rule(client, accounts, contracts, n, threshold, ok):
    addresses = [o.address for o in accounts.oracles[:n]]
    fn = contracts.registry.functions.setOracles(addresses, threshold)
    if ok:
        client.transact(fn, accounts.admin)
    else:
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(fn, accounts.admin)
        assert refused(excinfo) == "InvalidThreshold"


def test_oracle_set_refusals(client, accounts, contracts):
    reg = contracts.registry.functions
    a = accounts.oracles[0].address
    for oracles, error in (
        ([], "EmptyOracleSet"),
        ([a, a, accounts.oracles[1].address], "DuplicateOracle"),
        (["0x" + "00" * 20, a, accounts.oracles[1].address], "ZeroAddress"),
    ):
        with pytest.raises(ContractRevert) as excinfo:
            client.transact(reg.setOracles(oracles, 2), accounts.admin)
        assert refused(excinfo) == error


def test_register_pool_refusals(client, accounts, contracts, pool):
    reg = contracts.registry.functions
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(reg.registerPool(text_id(POOL), pool.token, 5_000, 2), accounts.admin)
    assert refused(excinfo) == "PoolAlreadyRegistered"
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(reg.registerPool(text_id("x"), pool.token, 10_001, 2), accounts.admin)
    assert refused(excinfo) == "InvalidShareBps"
