"""Stateful property test of the revenue-share token against a Python reference model.

Random issuance, transfers between allow-listed holders, distributions and claims, and the
agent's four recovery operations (freeze, unfreeze, forced transfer, wallet recovery). The
model keeps each holder's exact (rational) entitlement; the contract must pay it rounded down
by at most one unit, never more; a transfer or forced transfer after a distribution must not
move revenue that was already earned; a recovery moves the lost wallet's unclaimed revenue
exactly; no operation but a distribution changes the total claimed plus claimable, which
never exceeds what was funded. Frozen and lost holders are refused as the contract says.
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
from web3.contract.contract import ContractFunction

from gridshare.core.chain.accounts import ChainAccount, derive_account
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deployment import DeploymentRecord
from gridshare.core.errors import ContractRevert
from gridshare.core.settings import Settings

pytestmark = pytest.mark.slow

HOLDERS = 4  # three investors plus one more allow-listed account that starts with nothing
ACTIVE, FROZEN, LOST = "active", "frozen", "lost"


def test_token_matches_reference_model(client, record, accounts):
    extra = derive_account(Settings().mnemonic, 16)
    kyc = client.contract("InvestorRegistry", record.address("InvestorRegistry"))
    client.transact(kyc.functions.admit(extra.address, 2**40), accounts.kyc_agent)
    holders = [*accounts.investors[:3], extra]
    machine = make_machine(client, record, accounts.admin, holders)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=16,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def make_machine(
    client: ChainClient, record: DeploymentRecord, admin: ChainAccount, holders: list[ChainAccount]
) -> type[RuleBasedStateMachine]:
    coin = client.contract("TestStablecoin", record.stablecoin)
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
            self.status = [ACTIVE] * HOLDERS
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

        def total(self) -> int:
            fns = self.token.functions
            return sum(
                client.call(fns.claimable(h.address)) + client.call(fns.claimed(h.address))
                for h in holders
            )

        def refused(self, fn: ContractFunction, signer: ChainAccount, error: str) -> None:
            try:
                client.transact(fn, signer)
            except ContractRevert as exc:
                assert exc.error_name == error
            else:
                raise AssertionError(f"expected {error}")

        @rule(src=indices, dst=indices, percent=st.integers(0, 100))
        def transfer(self, src: int, dst: int, percent: int) -> None:
            value = self.balances[src] * percent // 100
            pair = [holders[src].address, holders[dst].address]
            fn = self.token.functions.transfer(pair[1], value)
            if self.status[src] != ACTIVE:
                self.refused(fn, holders[src], "AccountFrozen")
                return
            if self.status[dst] == LOST:
                self.refused(fn, holders[src], "AccountLost")
                return
            self.move(src, dst, value, fn, holders[src])

        @rule(src=indices, dst=indices, percent=st.integers(0, 100))
        def forced_transfer(self, src: int, dst: int, percent: int) -> None:
            value = self.balances[src] * percent // 100
            pair = [holders[src].address, holders[dst].address]
            fn = self.token.functions.forcedTransfer(pair[0], pair[1], value)
            if src == dst:
                self.refused(fn, admin, "SameAddress")
            elif self.status[dst] == LOST:
                self.refused(fn, admin, "AccountLost")
            else:
                self.move(src, dst, value, fn, admin)

        def move(
            self, src: int, dst: int, value: int, fn: ContractFunction, signer: ChainAccount
        ) -> None:
            pair = [holders[src].address, holders[dst].address]
            before = [client.call(self.token.functions.claimable(a)) for a in pair]
            client.transact(fn, signer)
            after = [client.call(self.token.functions.claimable(a)) for a in pair]
            assert before == after
            self.balances[src] -= value
            self.balances[dst] += value

        @rule(who=indices)
        def freeze(self, who: int) -> None:
            fn = self.token.functions.freeze(holders[who].address)
            if self.status[who] == ACTIVE:
                client.transact(fn, admin)
                self.status[who] = FROZEN
            else:
                self.refused(
                    fn, admin, "AccountFrozen" if self.status[who] == FROZEN else "AccountLost"
                )

        @rule(who=indices)
        def unfreeze(self, who: int) -> None:
            fn = self.token.functions.unfreeze(holders[who].address)
            if self.status[who] == FROZEN:
                client.transact(fn, admin)
                self.status[who] = ACTIVE
            else:
                self.refused(fn, admin, "NotFrozen")

        @precondition(lambda self: self.status.count(LOST) < HOLDERS - 2)
        @rule(lost=indices, replacement=indices)
        def recover(self, lost: int, replacement: int) -> None:
            if lost == replacement or LOST in (self.status[lost], self.status[replacement]):
                return
            fns = self.token.functions
            moved = client.call(fns.claimable(holders[lost].address))
            before = client.call(fns.claimable(holders[replacement].address))
            total = self.total()
            client.transact(
                fns.recoverWallet(holders[lost].address, holders[replacement].address), admin
            )
            assert client.call(fns.claimable(holders[replacement].address)) == before + moved
            assert client.call(fns.claimable(holders[lost].address)) == 0
            assert self.total() == total
            self.balances[replacement] += self.balances[lost]
            self.balances[lost] = 0
            self.entitled[replacement] += moved
            self.entitled[lost] = Fraction(self.claimed[lost])
            if self.status[lost] == FROZEN:
                self.status[replacement] = FROZEN
            self.status[lost] = LOST

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
            if self.status[who] != ACTIVE:
                error = "AccountFrozen" if self.status[who] == FROZEN else "AccountLost"
                self.refused(self.token.functions.claim(), holder, error)
                return
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
                    batch.add(fns.isFrozen(holder.address))
                batch.add(fns.totalFunded())
                *per_holder, total_funded = batch.execute()
            total = 0
            for i in range(HOLDERS):
                claimable, claimed, balance, frozen = per_holder[4 * i : 4 * i + 4]
                assert frozen == (self.status[i] == FROZEN)
                assert claimed == self.claimed[i]
                assert balance == self.balances[i]
                exact = int(self.entitled[i])  # floor of the exact entitlement
                assert exact - 1 <= claimed + claimable <= exact
                total += claimed + claimable
            assert total <= self.funded == total_funded

    return TokenMachine
