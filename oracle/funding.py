"""The money side: the operator funds what is final and owed, investors claim their part.

Epochs in their challenge window are not owed yet; `fund` says how much is pending and when
the next of it becomes final."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eth_utils import to_checksum_address
from web3.logs import DISCARD

from gridshare.core.chain.accounts import ChainAccount
from gridshare.core.errors import ContractRevert, GridshareError
from gridshare.core.ids import text_id
from gridshare.oracle.context import OracleContext

log = logging.getLogger(__name__)
FUND_ATTEMPTS = 3
LOCAL_CHAIN_IDS = (31337,)  # where the admin may mint test stablecoin to the operator
NOW = "pending"  # finality depends on the clock: read as of the next block


@dataclass(frozen=True)
class Payment:
    amount: int  # stablecoin units (the coin's decimals)
    tx_hash: str | None
    minted: int = 0
    pending: int = 0  # attested, still in the challenge window
    next_final_at: int | None = None  # Unix time the next pending epoch becomes final


def pending(ctx: OracleContext, pool_id: bytes) -> tuple[int, int | None]:
    """(investor amount still in the window, when the first pending epoch becomes final)."""
    functions = ctx.registry.functions
    amount = int(ctx.client.call(functions.pendingAmount(pool_id), NOW))
    final = int(ctx.client.call(functions.finalizedEpoch(pool_id), NOW))
    latest = int(ctx.client.call(functions.latestEpoch(pool_id), NOW))
    if latest <= final:
        return amount, None
    return amount, int(ctx.client.call(functions.challengeEnds(pool_id, final + 1), NOW))


def fund(ctx: OracleContext, pool: str) -> Payment:
    """Pay everything the pool's investors are owed: approve the registry if needed, then
    `fund`. On the local chain a short operator is topped up by the admin first. Another
    process funding at the same moment (the loop's auto-funding) is not an error: what is
    owed is read again and the rest paid."""
    for _ in range(FUND_ATTEMPTS - 1):
        try:
            return _fund_once(ctx, pool)
        except ContractRevert as exc:
            if exc.error_name != "FundingExceedsOwed":
                raise
    return _fund_once(ctx, pool)


def _fund_once(ctx: OracleContext, pool: str) -> Payment:
    pool_id = _pool_id(ctx, pool)
    owed = int(ctx.client.call(ctx.registry.functions.owed(pool_id), NOW))
    waiting, next_final_at = pending(ctx, pool_id)
    if owed == 0:
        return Payment(0, None, pending=waiting, next_final_at=next_final_at)
    operator = ctx.accounts.operator
    coin = ctx.client.contract("TestStablecoin", ctx.record.stablecoin)
    balance = int(ctx.client.call(coin.functions.balanceOf(operator.address)))
    minted = 0
    if balance < owed:
        if (
            ctx.settings.chain_id not in LOCAL_CHAIN_IDS
            or "TestStablecoin" not in ctx.record.contracts
        ):
            raise GridshareError(
                f"operator {operator.address} holds {balance} stablecoin units but owes {owed} "
                f"to {pool}; top it up first"
            )
        minted = owed - balance
        ctx.client.transact(coin.functions.mint(operator.address, minted), ctx.accounts.admin)
    allowance = int(
        ctx.client.call(coin.functions.allowance(operator.address, ctx.registry_address))
    )
    if allowance < owed:
        ctx.client.transact(coin.functions.approve(ctx.registry_address, owed), operator)
    receipt = ctx.client.transact(
        ctx.registry.functions.fund(pool_id, owed), operator, what=f"fund {pool}"
    )
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    funded = ctx.registry.events.Funded().process_receipt(receipt, errors=DISCARD)
    paid = int(funded[0]["args"]["amount"]) if funded else owed  # what arrived at the token
    log.info(
        "pool funded",
        extra={
            "fields": {
                "pool": pool,
                "amount": paid,
                "sent": owed,
                "minted": minted,
                "pending": waiting,
                "tx_hash": tx_hash,
            }
        },
    )
    return Payment(paid, tx_hash, minted, waiting, next_final_at)


def investor(ctx: OracleContext, account: str) -> ChainAccount:
    """An investor of accounts.json by index (0-based) or address."""
    investors = ctx.accounts.investors
    if account.isdigit():
        index = int(account)
        if index >= len(investors):
            raise GridshareError(f"investor {index} does not exist (0..{len(investors) - 1})")
        return investors[index]
    for candidate in investors:
        if candidate.address.lower() == account.lower():
            return candidate
    raise GridshareError(f"{account} is not an investor of accounts.json")


def claim(ctx: OracleContext, pool: str, holder: ChainAccount) -> Payment:
    """Claim everything `holder` can claim from the pool's token."""
    token_address = _token(ctx, pool)
    token = ctx.client.contract("RevenueShareToken", token_address)
    claimable = int(ctx.client.call(token.functions.claimable(holder.address)))
    if claimable == 0:
        return Payment(0, None)
    receipt = ctx.client.transact(token.functions.claim(), holder, what=f"claim {pool}")
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    log.info(
        "revenue claimed",
        extra={
            "fields": {"pool": pool, "holder": holder.address, "amount": claimable, "tx": tx_hash}
        },
    )
    return Payment(claimable, tx_hash)


def _pool_id(ctx: OracleContext, pool: str) -> bytes:
    _token(ctx, pool)
    return text_id(pool)


def _token(ctx: OracleContext, pool: str) -> str:
    """The pool's token as the registry knows it."""
    token = ctx.client.call(ctx.registry.functions.pool(text_id(pool)))[0]
    if int(token, 16) == 0:
        raise GridshareError(
            f"pool {pool} is not created on-chain; run `gridshare devices provision`"
        )
    return to_checksum_address(token)
