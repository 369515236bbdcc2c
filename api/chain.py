"""On-chain reads for the API through the shared chain client, cached for a few seconds.

web3.py's HTTP provider is synchronous, so calls run in worker threads with a short timeout.
Each figure is cached for `ttl` seconds (single-flight: concurrent requests for the same key
share one read), which bounds the RPC load to a few calls per pool per TTL whatever the
request rate. The client connects lazily, so the API serves device data while the chain is
down and reports the chain's state in /health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from eth_utils import to_checksum_address
from web3 import Web3

from gridshare.api.metrics import CHAIN_READS
from gridshare.api.schemas import Attestation
from gridshare.core.chain import ChainClient, DeploymentRecord, read_deployment
from gridshare.core.chain.deployment import deployment_path
from gridshare.core.chain.device_keys import DeviceKeys
from gridshare.core.errors import GridshareError
from gridshare.core.settings import Settings

T = TypeVar("T")
RPC_TIMEOUT = 3.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolChainFigures:
    token: str
    symbol: str
    decimals: int
    supply: int
    latest_epoch: int
    investor_attested: int
    funded: int
    owed: int
    claimed: int
    distributed: int
    stablecoin_decimals: int
    pending: int  # investor share still in the challenge window


@dataclass(frozen=True)
class HoldingFigures:
    symbol: str
    balance: int
    supply: int
    claimable: int
    claimed: int
    frozen: bool
    lost: bool


SETTLEMENT = {0: "none", 1: "pending", 2: "final", 3: "vetoed"}  # epochStatus values


@dataclass(frozen=True)
class EpochSettlement:
    """An epoch's state in the challenge window, as of the chain's clock."""

    status: str  # none, pending, final, vetoed
    challenge_ends: int | None  # Unix time (None when none or vetoed)
    seconds_left: int | None  # while pending


class ChainUnavailable(GridshareError):
    """The chain or the deployment record is not there (yet)."""


class ChainReader:
    def __init__(self, settings: Settings, ttl: float = 5.0) -> None:
        self.settings = settings
        self.ttl = ttl
        self._client: ChainClient | None = None
        self._record: tuple[float, DeploymentRecord] | None = None
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._inflight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self._keys: DeviceKeys | None = None

    # ----- plumbing -----

    def client(self) -> ChainClient:
        if self._client is None:
            w3 = Web3(
                Web3.HTTPProvider(self.settings.rpc_url, request_kwargs={"timeout": RPC_TIMEOUT})
            )
            self._client = ChainClient(self.settings, w3=w3)
        return self._client

    def record(self) -> DeploymentRecord:
        """The deployment record, re-read when the file changes (pools get added)."""
        path = deployment_path(self.settings)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError as exc:
            raise ChainUnavailable(f"no deployment record at {path}") from exc
        if self._record is None or self._record[0] != mtime:
            self._record = (mtime, read_deployment(self.settings))
        return self._record[1]

    async def cached(self, key: tuple[Any, ...], read: Callable[[], T]) -> T:
        """`read()` in a thread, cached for ttl seconds, one read in flight per key."""
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await asyncio.to_thread(read)
        except Exception as exc:
            CHAIN_READS.labels("error").inc()
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning
            raise
        else:
            CHAIN_READS.labels("ok").inc()
            self._cache[key] = (time.monotonic() + self.ttl, value)
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]

    # ----- reads -----

    async def ping(self) -> str:
        """A one-line chain state for /health; raises when unreachable."""

        def read() -> str:
            w3 = self.client().w3
            return f"chain {w3.eth.chain_id}, block {w3.eth.block_number}"

        return await self.cached(("ping",), read)

    async def pool(self, name: str) -> PoolChainFigures:
        def read() -> PoolChainFigures:
            record = self.record()
            entry = record.pools.get(name)
            if entry is None:
                raise ChainUnavailable(f"pool {name} not in the deployment record")
            client = self.client()
            token = client.contract("RevenueShareToken", entry.token)
            registry = client.contract("AttestationRegistry", record.address("AttestationRegistry"))
            stable = client.contract("TestStablecoin", record.stablecoin)
            pid = bytes.fromhex(entry.pool_id.removeprefix("0x"))
            with client.w3.batch_requests() as batch:
                batch.add(token.functions.symbol())
                batch.add(token.functions.decimals())
                batch.add(token.functions.totalSupply())
                batch.add(registry.functions.latestEpoch(pid))
                # finality follows the clock: read as of the next block, whose time is now
                batch.add(registry.functions.attested(pid).call(block_identifier="pending"))
                batch.add(registry.functions.funded(pid))
                batch.add(registry.functions.owed(pid).call(block_identifier="pending"))
                batch.add(token.functions.totalFunded())
                batch.add(stable.functions.balanceOf(entry.token))
                batch.add(stable.functions.decimals())
                batch.add(registry.functions.pendingAmount(pid).call(block_identifier="pending"))
                values = batch.execute()
            symbol, decimals, supply, latest, attested, funded, owed = values[:7]
            distributed, unclaimed, stable_decimals, pending = values[7:]
            # The token holds what it was paid and holders have not claimed yet.
            claimed = max(0, distributed - unclaimed)
            return PoolChainFigures(
                entry.token,
                symbol,
                decimals,
                supply,
                latest,
                attested,
                funded,
                owed,
                claimed,
                distributed,
                stable_decimals,
                pending,
            )

        return await self.cached(("pool", name), read)

    async def holdings(self, address: str) -> dict[str, HoldingFigures]:
        """Per pool in the deployment record: the address's balance, claimable, claimed."""
        holder = to_checksum_address(address)

        def read() -> dict[str, HoldingFigures]:
            record = self.record()
            client = self.client()
            names = sorted(record.pools)
            with client.w3.batch_requests() as batch:
                for name in names:
                    token = client.contract("RevenueShareToken", record.pools[name].token)
                    batch.add(token.functions.symbol())
                    batch.add(token.functions.balanceOf(holder))
                    batch.add(token.functions.totalSupply())
                    batch.add(token.functions.claimable(holder))
                    batch.add(token.functions.claimed(holder))
                    batch.add(token.functions.isFrozen(holder))
                    batch.add(token.functions.isLost(holder))
                values = batch.execute() if names else []
            return {
                name: HoldingFigures(*values[7 * i : 7 * i + 7]) for i, name in enumerate(names)
            }

        return await self.cached(("holdings", holder), read)

    async def device_keys(self) -> DeviceKeys:
        """Every device's on-chain key history (DeviceRegistry events), read incrementally
        and refreshed at most every ttl seconds."""

        def read() -> DeviceKeys:
            record = self.record()
            address = record.address("DeviceRegistry")
            if self._keys is None or self._keys.registry != to_checksum_address(address):
                self._keys = DeviceKeys(self.client().w3, address, record.block)
            self._keys.refresh()
            return self._keys

        return await self.cached(("device_keys",), read)

    async def settlement(self, pool_id: str, epochs: list[int]) -> dict[int, EpochSettlement]:
        """Each epoch's status and challenge window end, read as of the next block (the
        chain's present, even when no block was mined lately)."""

        def read() -> dict[int, EpochSettlement]:
            client = self.client()
            registry = client.contract(
                "AttestationRegistry", self.record().address("AttestationRegistry")
            )
            pid = bytes.fromhex(pool_id.removeprefix("0x"))
            now = int(client.w3.eth.get_block("pending")["timestamp"])
            with client.w3.batch_requests() as batch:
                for epoch in epochs:
                    fns = registry.functions
                    batch.add(fns.epochStatus(pid, epoch).call(block_identifier="pending"))
                    batch.add(fns.challengeEnds(pid, epoch).call(block_identifier="pending"))
                values = batch.execute() if epochs else []
            result = {}
            for i, epoch in enumerate(epochs):
                status, ends = SETTLEMENT[int(values[2 * i])], int(values[2 * i + 1])
                left = max(0, ends - now) if status == "pending" else None
                result[epoch] = EpochSettlement(status, ends or None, left)
            return result

        return await self.cached(("settlement", pool_id, tuple(epochs)), read)

    async def verify_leaf(
        self, pool_id: str, epoch: int, leaf: str, proof: list[str]
    ) -> tuple[bool, str, str]:
        """(verifyLeaf result, the root stored on-chain, registry address); not cached."""

        def read() -> tuple[bool, str, str]:
            record = self.record()
            client = self.client()
            address = record.address("AttestationRegistry")
            registry = client.contract("AttestationRegistry", address)
            pid = bytes.fromhex(pool_id.removeprefix("0x"))
            nodes = [bytes.fromhex(p.removeprefix("0x")) for p in proof]
            valid = client.call(
                registry.functions.verifyLeaf(pid, epoch, bytes.fromhex(leaf[2:]), nodes)
            )
            stored = client.call(registry.functions.attestation(pid, epoch))
            root = stored[8] if isinstance(stored, (list, tuple)) else stored["leavesRoot"]
            return bool(valid), "0x" + bytes(root).hex(), address

        CHAIN_READS.labels("ok").inc()
        return await asyncio.to_thread(read)


async def with_settlement(
    reader: ChainReader, pool_id: str, items: list[Attestation]
) -> list[Attestation]:
    """The attestations with their on-chain settlement state; unchanged (null) while the
    chain is unreachable, so the database's figures are still served."""
    try:
        states = await reader.settlement(pool_id, [a.epoch for a in items])
    except Exception as exc:  # the chain is down or not deployed: serve what we have
        log.warning("settlement state unavailable", extra={"fields": {"error": str(exc)}})
        return items
    return [
        a.model_copy(
            update={
                "settlement": states[a.epoch].status,
                "challenge_ends": datetime.fromtimestamp(states[a.epoch].challenge_ends, UTC)
                if states[a.epoch].challenge_ends
                else None,
                "seconds_left": states[a.epoch].seconds_left,
            }
        )
        for a in items
    ]
