"""ChainClient: decoded refusals, node rejections as one line, concurrent senders of one key."""

from __future__ import annotations

import multiprocessing

import pytest

from gridshare.core.chain.accounts import derive_account, load_accounts
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deployment import read_deployment
from gridshare.core.errors import ContractRevert
from gridshare.core.settings import Settings

SENDS = 6


def test_custom_error_decoded_with_arguments(client, accounts, contracts):
    with pytest.raises(ContractRevert) as excinfo:
        client.transact(contracts.registry.functions.fund(b"\1" * 32, 5), accounts.operator)
    assert excinfo.value.error_name == "PoolNotRegistered"
    assert excinfo.value.error_args == (b"\1" * 32,)
    assert str(excinfo.value).startswith("fund: reverted with PoolNotRegistered(0x0101")


def test_node_rejection_is_one_line(client, contracts):
    broke = derive_account(Settings().mnemonic, 40)  # beyond Anvil's funded accounts
    with pytest.raises(ContractRevert, match="rejected by the node") as excinfo:
        client.transact(contracts.coin.functions.approve(broke.address, 1), broke)
    assert "\n" not in str(excinfo.value)


def _mint_many(settings: Settings) -> int:
    client = ChainClient(settings)
    accounts = load_accounts(settings)
    coin = client.contract("TestStablecoin", read_deployment(settings).address("TestStablecoin"))
    for _ in range(SENDS):
        client.transact(coin.functions.mint(accounts.operator.address, 1), accounts.admin)
    return SENDS


def test_processes_sharing_a_key_do_not_collide(chain_settings, client, accounts, contracts):
    before = client.call(contracts.coin.functions.balanceOf(accounts.operator.address))
    with multiprocessing.get_context("fork").Pool(3) as pool:
        sent = sum(pool.map(_mint_many, [chain_settings] * 3))
    after = client.call(contracts.coin.functions.balanceOf(accounts.operator.address))
    assert after - before == sent == 3 * SENDS
