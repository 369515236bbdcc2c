"""Stateful property test of the revenue-share token against a Python reference model.

Random issuance, transfers between allow-listed holders, distributions and claims. The model
keeps each holder's exact (rational) entitlement; the contract must pay it rounded down by at
most one unit, never more, and a transfer after a distribution must not move revenue that was
already earned.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gridshare.core.chain.accounts import ChainAccount, derive_account
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deployment import DeploymentRecord
from gridshare.core.settings import Settings

pytestmark = pytest.mark.slow

HOLDERS = 4  # three investors plus one more allow-listed account that starts with nothing


def test_token_matches_reference_model(client, record, accounts):
    extra = derive_account(Settings().mnemonic, 16)
    kyc = client.contract("InvestorRegistry", record.address("InvestorRegistry"))
    client.transact(kyc.functions.admit(extra.address, 2**40), accounts.kyc_agent)
    holders = [*accounts.investors[:3], extra]
    machine = make_machine(client, record, accounts.admin, holders)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=8,
            stateful_step_count=12,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def make_machine(
    client: ChainClient, record: DeploymentRecord, admin: ChainAccount, holders: list[ChainAccount]
) -> type[RuleBasedStateMachine]:
    coin = client.contract("TestStablecoin", record.address("TestStablecoin"))
    w3 = client.w3
    indices = st.integers(0, HOLDERS - 1)

    class TokenMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
            self.token = None
            self.balances = [0] * HOLDERS
            self.entitled = [Fraction(0)] * HOLDERS
            self.claimed = [0] * HOLDERS
            self.funded = 0

        def teardown(self) -> None:
            w3.provider.make_request("evm_revert", [self.snapshot])

        @initialize(amounts=st.lists(st.integers(1, 10**24), min_size=3, max_size=3))
        def issue(self, amounts: list[int]) -> None:
            address, _ = client.deploy(
                "RevenueShareToken",
                [
                    "Model pool",
                    "MP",
                    b"\1" * 32,
                    coin.address,
                    record.address("InvestorRegistry"),
                    admin.address,
                    admin.address,
                    admin.address,
                    [h.address for h in holders[:3]],
                    amounts,
                ],
                admin,
            )
            self.token = client.contract("RevenueShareToken", address)
            self.balances = [*amounts, 0]

        @rule(src=indices, dst=indices, percent=st.integers(0, 100))
        def transfer(self, src: int, dst: int, percent: int) -> None:
            value = self.balances[src] * percent // 100
            pair = [holders[src].address, holders[dst].address]
            before = [client.call(self.token.functions.claimable(a)) for a in pair]
            client.transact(self.token.functions.transfer(pair[1], value), holders[src])
            after = [client.call(self.token.functions.claimable(a)) for a in pair]
            assert before == after
            self.balances[src] -= value
            self.balances[dst] += value

        @rule(amount=st.integers(1, 10**13))
        def distribute(self, amount: int) -> None:
            client.transact(coin.functions.mint(self.token.address, amount), admin)
            client.transact(self.token.functions.distribute(amount), admin)
            supply = sum(self.balances)
            for i in range(HOLDERS):
                self.entitled[i] += Fraction(amount * self.balances[i], supply)
            self.funded += amount

        @precondition(lambda self: self.funded > 0)
        @rule(who=indices)
        def claim(self, who: int) -> None:
            holder = holders[who]
            due = client.call(self.token.functions.claimable(holder.address))
            if due == 0:
                return
            before = client.call(coin.functions.balanceOf(holder.address))
            client.transact(self.token.functions.claim(), holder)
            assert client.call(coin.functions.balanceOf(holder.address)) - before == due
            self.claimed[who] += due

        @invariant()
        def matches_model(self) -> None:
            if self.token is None:
                return
            fns = self.token.functions
            with w3.batch_requests() as batch:
                for holder in holders:
                    batch.add(fns.claimable(holder.address))
                    batch.add(fns.claimed(holder.address))
                    batch.add(fns.balanceOf(holder.address))
                batch.add(fns.totalFunded())
                *per_holder, total_funded = batch.execute()
            total = 0
            for i in range(HOLDERS):
                claimable, claimed, balance = per_holder[3 * i : 3 * i + 3]
                assert claimed == self.claimed[i]
                assert balance == self.balances[i]
                exact = int(self.entitled[i])  # floor of the exact entitlement
                assert exact - 1 <= claimed + claimable <= exact
                total += claimed + claimable
            assert total <= self.funded == total_funded

    return TokenMachine
