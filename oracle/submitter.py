"""Sending an attestation so that a crash at any point neither double-submits nor loses it.

The signed transaction (hash, nonce, raw bytes) is committed to the database *before* it is
broadcast. After a restart the same transaction is looked up by hash; if the chain has never
seen it and its nonce is still free, the very same bytes are broadcast again (same hash: it
can be mined at most once); if the nonce was used by something else, a new transaction is
built. Before anything is built, the registry's `latestEpoch` says whether the epoch is
already on-chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError

from gridshare.core.chain.accounts import ChainAccount
from gridshare.core.chain.attestation import Attestation
from gridshare.core.chain.client import ChainClient
from gridshare.core.errors import ContractRevert


@dataclass(frozen=True)
class SignedTx:
    tx_hash: str
    nonce: int
    raw: str


@dataclass(frozen=True)
class Mined:
    """A mined transaction: success, or the decoded reason it reverted."""

    tx_hash: str
    block_number: int
    gas_used: int
    ok: bool
    revert: str = ""


def build_submit(
    client: ChainClient,
    registry: Contract,
    attestation: Attestation,
    signatures: list[bytes],
    sender: ChainAccount,
) -> SignedTx:
    """Sign (not send) `submit`; gas estimation runs it first, so a refusal surfaces here as
    a ContractRevert naming the custom error."""
    address = to_checksum_address(sender.address)
    nonce = client.w3.eth.get_transaction_count(address, "pending")
    fn = registry.functions.submit(attestation.as_tuple(), signatures)
    try:
        tx = fn.build_transaction(
            {"from": address, "nonce": nonce, "chainId": client.settings.chain_id}
        )
    except ContractLogicError as exc:
        raise client.decode_revert(exc, f"submit epoch {attestation.epoch}") from exc
    signed = sender.signer.sign_transaction(tx)
    raw = "0x" + bytes(signed.raw_transaction).hex()
    return SignedTx("0x" + bytes(signed.hash).hex(), nonce, raw)


def broadcast(client: ChainClient, tx: SignedTx) -> None:
    """Send the raw transaction; "already known" means it is in flight, which is fine."""
    try:
        client.w3.eth.send_raw_transaction(HexBytes(tx.raw))
    except (Web3RPCError, ValueError) as exc:
        text = str(exc).lower()
        if "already known" in text or "already imported" in text:
            return
        raise


def find(client: ChainClient, tx_hash: str) -> dict[str, Any] | None:
    """The transaction if the node knows it (pending or mined), else None."""
    try:
        return dict(client.w3.eth.get_transaction(HexBytes(tx_hash)))
    except TransactionNotFound:
        return None


def receipt(client: ChainClient, tx_hash: str) -> dict[str, Any] | None:
    try:
        return dict(client.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
    except TransactionNotFound:
        return None


def wait_mined(client: ChainClient, tx_hash: str, timeout: float) -> Mined | None:
    """Wait for the receipt; None on timeout. A revert is replayed to decode its error."""
    try:
        rcpt = client.w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=timeout)
    except TimeExhausted:
        return None
    return _mined(client, tx_hash, dict(rcpt))


def mined_from_receipt(client: ChainClient, tx_hash: str, rcpt: dict[str, Any]) -> Mined:
    return _mined(client, tx_hash, rcpt)


def _mined(client: ChainClient, tx_hash: str, rcpt: dict[str, Any]) -> Mined:
    block, gas = int(rcpt["blockNumber"]), int(rcpt["gasUsed"])
    if rcpt["status"] == 1:
        return Mined(tx_hash, block, gas, True)
    return Mined(tx_hash, block, gas, False, _revert_reason(client, tx_hash, block))


def _revert_reason(client: ChainClient, tx_hash: str, block: int) -> str:
    tx = client.w3.eth.get_transaction(HexBytes(tx_hash))
    call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
    try:
        client.w3.eth.call(call, block - 1)  # type: ignore[arg-type]
    except ContractLogicError as exc:
        return str(client.decode_revert(exc, "submit"))
    except ContractRevert as exc:
        return str(exc)
    return f"submit: reverted in block {block}"


def nonce_used(client: ChainClient, address: str, nonce: int) -> bool:
    """Whether the account's nonce `nonce` is taken by a mined transaction."""
    return client.w3.eth.get_transaction_count(to_checksum_address(address), "latest") > nonce


def accepted_log(
    client: ChainClient, registry: Contract, pool_id: bytes, epoch: int, from_block: int
) -> dict[str, Any] | None:
    """The AttestationAccepted event of (pool, epoch), to recover the tx of an epoch found
    on-chain without a record of sending it."""
    logs = registry.events.AttestationAccepted.get_logs(
        from_block=from_block, argument_filters={"poolId": pool_id, "epoch": epoch}
    )
    return dict(logs[-1]) if logs else None
