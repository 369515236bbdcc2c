"""A web3.py client for the local chain: connect, deploy, call and transact with local keys.

Reverts come back as `ContractRevert` naming the contract's custom error and its arguments,
decoded against every error declared in the compiled contracts.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import requests
from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import TxReceipt

from gridshare.core.chain.accounts import ChainAccount
from gridshare.core.chain.artifacts import Artifact, error_abis, load_artifact
from gridshare.core.errors import ConfigError, ContractRevert, ServiceUnreachable
from gridshare.core.settings import Settings

T = TypeVar("T")
RECEIPT_TIMEOUT = 120
FEE_CACHE_SECONDS = 5.0
SEND_ATTEMPTS = 10
LOCAL_CHAIN_ID = 31337

_nonce_lock = threading.Lock()


def connect(settings: Settings) -> Web3:
    """A Web3 connected to GRIDSHARE_RPC_URL, checked to answer with the configured chain id."""
    w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 60}))
    try:
        chain_id = w3.eth.chain_id
    except (requests.RequestException, OSError, Web3RPCError, ValueError) as exc:
        raise ServiceUnreachable("chain", "GRIDSHARE_RPC_URL", settings.rpc_url, exc) from exc
    if chain_id != settings.chain_id:
        raise ConfigError(
            "GRIDSHARE_CHAIN_ID",
            f"is {settings.chain_id} but the chain at {settings.rpc_url} reports {chain_id}",
        )
    return w3


class ChainClient:
    """One connection plus the helpers every chain call goes through."""

    def __init__(self, settings: Settings, w3: Web3 | None = None) -> None:
        self.settings = settings
        self.w3 = w3 or connect(settings)
        self._errors: dict[bytes, dict[str, Any]] | None = None
        self._fee_cache: tuple[float, dict[str, int]] | None = None

    # ----- contracts -----

    def contract(self, name: str | Artifact, address: str) -> Contract:
        """A web3 contract object for a compiled contract (by name or artifact) at `address`."""
        artifact = name if isinstance(name, Artifact) else load_artifact(name)
        return self.w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)

    def has_code(self, address: str) -> bool:
        return len(self._rpc(lambda: self.w3.eth.get_code(to_checksum_address(address)))) > 0

    def deploy(
        self, name: str | Artifact, args: list[Any], signer: ChainAccount
    ) -> tuple[str, TxReceipt]:
        """Deploy a compiled contract (by name or artifact); (address, receipt)."""
        artifact = name if isinstance(name, Artifact) else load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self.transact(factory.constructor(*args), signer, what=f"deploy {artifact.name}")
        return to_checksum_address(receipt["contractAddress"]), receipt

    def increase_time(self, seconds: int) -> int:
        """Move a development chain's clock forward and mine a block (Anvil's
        `evm_increaseTime`), so a challenge window passes without waiting; the new time."""
        if self.settings.chain_id != LOCAL_CHAIN_ID:
            raise ConfigError("GRIDSHARE_CHAIN_ID", "only the local chain's clock can be moved")
        self._rpc(lambda: self.w3.provider.make_request("evm_increaseTime", [seconds]))
        self._rpc(lambda: self.w3.provider.make_request("evm_mine", []))
        return int(self._rpc(lambda: self.w3.eth.get_block("latest"))["timestamp"])

    # ----- calls and transactions -----

    def call(self, fn: ContractFunction, block: str = "latest") -> Any:
        """A read-only call; reverts raise ContractRevert. `block="pending"` reads as of the
        next block, whose timestamp is now: views that depend on the clock (a challenge
        window that has ended) see the present even when no block was mined lately."""
        return self._rpc(lambda: fn.call(block_identifier=block), what=_describe(fn))

    def transact(
        self,
        fn: ContractFunction | ContractConstructor,
        signer: ChainAccount,
        what: str | None = None,
        gas: int | None = None,
    ) -> TxReceipt:
        """Sign with the local key, send, wait for the receipt; a refusal raises ContractRevert."""
        what = what or _describe(fn)
        address = to_checksum_address(signer.address)
        for attempt in range(SEND_ATTEMPTS):
            try:
                tx, tx_hash = self._sign_and_send(fn, signer, address, what, gas)
                break
            except Web3RPCError as exc:
                # Another process sent with the same key (nonce taken) or the base fee moved
                # past the cached cap: refresh both and sign again.
                retriable = any(w in str(exc).lower() for w in ("nonce", "fee", "underpriced"))
                if not retriable or attempt == SEND_ATTEMPTS - 1:
                    raise ContractRevert(f"{what}: rejected by the node: {exc}") from exc
                self._fee_cache = None
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        try:
            receipt = self._rpc(
                lambda: self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT)
            )
        except TimeExhausted as exc:
            raise ContractRevert(f"{what}: no receipt after {RECEIPT_TIMEOUT}s") from exc
        if receipt["status"] != 1:
            self._replay_failure(tx, receipt, what)
        return receipt

    def _sign_and_send(
        self,
        fn: ContractFunction | ContractConstructor,
        signer: ChainAccount,
        address: str,
        what: str,
        gas: int | None,
    ) -> tuple[dict[str, Any], bytes]:
        with _nonce_lock, self._signer_lock(address):
            nonce = self._rpc(lambda: self.w3.eth.get_transaction_count(address, "pending"))
            params: dict[str, Any] = {
                "from": address,
                "nonce": nonce,
                "chainId": self.settings.chain_id,
                **self._fees(),
            }
            if gas is not None:
                params["gas"] = gas
            tx = self._rpc(lambda: fn.build_transaction(params), what=what)
            signed = signer.signer.sign_transaction(tx)
            tx_hash = self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        return tx, tx_hash

    @contextlib.contextmanager
    def _signer_lock(self, address: str) -> Iterator[None]:
        """Serialise nonce-read-to-send per key across the processes sharing the state dir."""
        locks = self.settings.state_path / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{address.lower()}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _fees(self) -> dict[str, int]:
        """EIP-1559 fee caps, refreshed every few seconds (saves two round trips per tx)."""
        now = time.monotonic()
        if self._fee_cache is None or now - self._fee_cache[0] > FEE_CACHE_SECONDS:
            base = self._rpc(lambda: self.w3.eth.get_block("latest"))["baseFeePerGas"]
            tip = self._rpc(lambda: self.w3.eth.max_priority_fee)
            self._fee_cache = (now, {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip})
        return self._fee_cache[1]

    def _replay_failure(self, tx: dict[str, Any], receipt: TxReceipt, what: str) -> None:
        """Re-run a transaction that reverted when mined, to learn and raise its error."""
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        self._rpc(lambda: self.w3.eth.call(call, receipt["blockNumber"] - 1), what=what)
        raise ContractRevert(f"{what}: reverted in block {receipt['blockNumber']}")

    def _rpc(self, action: Callable[[], T], what: str = "chain call") -> T:
        try:
            return action()
        except ContractLogicError as exc:
            raise self.decode_revert(exc, what) from exc
        except (requests.ConnectionError, requests.Timeout, ConnectionError) as exc:
            raise ServiceUnreachable(
                "chain", "GRIDSHARE_RPC_URL", self.settings.rpc_url, exc
            ) from exc

    # ----- revert decoding -----

    def decode_revert(self, exc: ContractLogicError, what: str) -> ContractRevert:
        """ContractRevert naming the custom error (or reason string) carried by `exc`."""
        data = exc.data if isinstance(exc.data, str) else None
        name, args = self._decode_error_data(data) if data else ("", ())
        if name:
            rendered = ", ".join(_render(a) for a in args)
            return ContractRevert(f"{what}: reverted with {name}({rendered})", name, args)
        return ContractRevert(f"{what}: reverted ({exc.message or exc})")

    def _decode_error_data(self, data: str) -> tuple[str, tuple[Any, ...]]:
        raw = bytes.fromhex(data.removeprefix("0x"))
        if len(raw) < 4:
            return "", ()
        if self._errors is None:
            self._errors = {}
            for item in error_abis():
                types = [i["type"] for i in item["inputs"]]
                selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                self._errors[selector] = item
        item = self._errors.get(raw[:4])
        if item is None:
            if raw[:4] == keccak(text="Error(string)")[:4]:
                return "Error", tuple(abi_decode(["string"], raw[4:]))
            if raw[:4] == keccak(text="Panic(uint256)")[:4]:
                return "Panic", tuple(abi_decode(["uint256"], raw[4:]))
            return "", ()
        types = [i["type"] for i in item["inputs"]]
        return item["name"], tuple(abi_decode(types, raw[4:]))


def _describe(fn: ContractFunction | ContractConstructor) -> str:
    if isinstance(fn, ContractConstructor):
        return "deploy"
    return f"{fn.fn_name}"


def _render(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
