"""Every signing key each device has held on-chain, and from when to when, read from the
DeviceRegistry's `DeviceRegistered` and `DeviceKeyRotated` events (not from any database).

A device's first key is valid from the beginning of time (devices may backfill readings taken
before they were registered); a rotation mined in a block with timestamp T ends the old key's
span at T and starts the new key's there. A reading is the device's when its signature
recovers to the key whose span holds the reading's signed device time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import RPCEndpoint

from gridshare.core.ids import text_id
from gridshare.core.signing import checksum_address

REGISTERED = keccak(text="DeviceRegistered(bytes32,address,bytes32)")
ROTATED = keccak(text="DeviceKeyRotated(bytes32,address,address)")
LOG_CHUNK_BLOCKS = 50_000


@dataclass(frozen=True)
class KeySpan:
    """One key of a device and the device time it was valid for (unix seconds, ends open)."""

    address: str
    valid_from: int | None  # None: from the beginning
    valid_until: int | None  # None: still the device's key
    block: int  # where the chain set it

    def holds(self, moment: datetime) -> bool:
        t = moment.timestamp()
        return (self.valid_from is None or t >= self.valid_from) and (
            self.valid_until is None or t < self.valid_until
        )

    def as_json(self) -> dict[str, object]:
        def iso(t: int | None) -> str | None:
            return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

        return {
            "address": self.address,
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
            "block": self.block,
        }


class DeviceKeys:
    """The key history of every device of one DeviceRegistry, read incrementally: each
    `refresh()` reads only the blocks mined since the last one.

    The events are fetched with raw `eth_getLogs` requests and decoded here: a registry of
    10,000 devices returns 10,000 `DeviceRegistered` events, and web3's result formatters and
    attribute-dict middleware take longer over them than the node takes to answer."""

    def __init__(self, w3: Web3, registry: str, from_block: int = 0) -> None:
        self.w3 = w3
        self.registry = to_checksum_address(registry)
        self._next_block = from_block
        self._spans: dict[bytes, list[KeySpan]] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read the registry's key events up to the latest block."""
        with self._lock:
            latest = int(self.w3.eth.block_number)
            while self._next_block <= latest:
                last = min(self._next_block + LOG_CHUNK_BLOCKS - 1, latest)
                moments: dict[int, int] = {}
                for event in sorted(self._events(self._next_block, last)):
                    self._apply(event, moments)
                self._next_block = last + 1

    def _rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(RPCEndpoint(method), params)
        if "error" in response:
            raise Web3RPCError(f"{method}: {response['error']}", rpc_response=response)
        return response["result"]

    def _events(self, first: int, last: int) -> list[KeyEvent]:
        """The registry's key events mined in blocks [first, last]."""
        logs = self._rpc(
            "eth_getLogs",
            [
                {
                    "address": self.registry,
                    "fromBlock": hex(first),
                    "toBlock": hex(last),
                    "topics": [["0x" + REGISTERED.hex(), "0x" + ROTATED.hex()]],
                }
            ],
        )
        return [
            KeyEvent(
                int(entry["blockNumber"], 16),
                int(entry["logIndex"], 16),
                tuple(bytes.fromhex(t[2:]) for t in entry["topics"]),
            )
            for entry in logs
            if not entry.get("removed")
        ]

    def _apply(self, event: KeyEvent, moments: dict[int, int]) -> None:
        """One event; `moments` caches block timestamps (rotations in one block)."""
        topics, block = event.topics, event.block
        device = topics[1]
        if topics[0] == REGISTERED:
            self._spans[device] = [KeySpan(_address(topics[2]), None, None, block)]
            return
        spans = self._spans.get(device, [])
        if block not in moments:
            moments[block] = int(
                self._rpc("eth_getBlockByNumber", [hex(block), False])["timestamp"], 16
            )
        moment = moments[block]
        if spans:
            last = spans[-1]
            spans[-1] = KeySpan(last.address, last.valid_from, moment, last.block)
        spans.append(KeySpan(_address(topics[3]), moment, None, block))
        self._spans[device] = spans

    def spans(self, device_id: str) -> list[KeySpan]:
        """The device's keys, oldest first (empty: not registered on-chain)."""
        return list(self._spans.get(text_id(device_id), []))

    def key_at(self, device_id: str, moment: datetime) -> KeySpan | None:
        """The key the device held at `moment` (device time)."""
        return next((s for s in self._spans.get(text_id(device_id), []) if s.holds(moment)), None)


class KeyEvent(NamedTuple):
    """A `DeviceRegistered` or `DeviceKeyRotated` log, in chain order when sorted."""

    block: int
    index: int
    topics: tuple[bytes, ...]


def _address(topic: bytes) -> str:
    return checksum_address(topic[-20:])
