"""Pools and devices on-chain: a revenue-share token per pool, device registration in bulk.

Both are idempotent, so provisioning can be re-run: an existing pool is returned as it is,
already registered devices are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from eth_utils import to_checksum_address
from web3.contract import Contract

from gridshare.core.chain.accounts import load_accounts
from gridshare.core.chain.attestation import HKD_EXPONENT
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deployment import (
    PoolRecord,
    read_deployment,
    record_lock,
    write_deployment,
)
from gridshare.core.errors import GridshareError
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings

log = logging.getLogger(__name__)

TOKEN_SUPPLY = 1_000_000 * 10**18  # each pool's fixed issuance, split among the investors
DEFAULT_SHARE_BPS = 5_000
REGISTER_CHUNK = 200  # devices per registerBatch transaction (about 10M gas)
ZERO_ADDRESS = "0x" + "00" * 20


def token_symbol(name: str) -> str:
    """`charging-pile-1` -> `GSCP1`."""
    parts = name.split("-")
    return "GS" + "".join(p[0].upper() if not p.isdigit() else p for p in parts if p)


def issuance(investors: Sequence[str]) -> list[int]:
    """TOKEN_SUPPLY split equally; the remainder goes to the first investor."""
    share, rest = divmod(TOKEN_SUPPLY, len(investors))
    return [share + (rest if i == 0 else 0) for i in range(len(investors))]


def create_pool(
    settings: Settings,
    name: str,
    device_type: str,
    share_bps: int = DEFAULT_SHARE_BPS,
    client: ChainClient | None = None,
    currency_exponent: int = HKD_EXPONENT,
) -> PoolRecord:
    """Deploy the pool's token (issued to the investors), register it with the minor-unit
    exponent of its revenue currency, record it."""
    if not 0 < share_bps <= 10_000:
        raise GridshareError(f"pool {name}: share_bps {share_bps} outside 1..10000")
    client = client or ChainClient(settings)
    with record_lock(settings):
        record = read_deployment(settings)
        known = record.pools.get(name)
        if known is not None and client.has_code(known.token):
            return known
        accounts = load_accounts(settings)
        registry = client.contract("AttestationRegistry", record.address("AttestationRegistry"))
        pid = text_id(name)
        token, registered_bps, _, _, _ = client.call(registry.functions.pool(pid))
        if token == ZERO_ADDRESS:
            investors = [i.address for i in accounts.investors]
            token, _ = client.deploy(
                "RevenueShareToken",
                [
                    f"Gridshare {name} revenue share",
                    token_symbol(name),
                    pid,
                    record.stablecoin,
                    record.address("InvestorRegistry"),
                    accounts.admin.address,
                    accounts.operator.address,
                    record.address("AttestationRegistry"),
                    investors,
                    issuance(investors),
                ],
                accounts.admin,
            )
            client.transact(
                registry.functions.registerPool(pid, token, share_bps, currency_exponent),
                accounts.admin,
            )
            registered_bps = share_bps
        pool = PoolRecord(
            pool_id="0x" + pid.hex(),
            token=to_checksum_address(token),
            device_type=device_type,
            share_bps=registered_bps,
        )
        record.pools[name] = pool
        write_deployment(settings, record)
        log.info("pool created", extra={"fields": {"pool": name, "token": pool.token}})
        return pool


def register_devices(
    settings: Settings,
    devices: Iterable[tuple[str, str, str]],
    client: ChainClient | None = None,
) -> int:
    """Register (device_id, signer address, pool name) triples not yet registered.

    Returns how many were registered now. Pools must have been created first.
    """
    client = client or ChainClient(settings)
    record = read_deployment(settings)
    wanted = list(devices)
    for _, _, pool_name in wanted:
        if pool_name not in record.pools:
            raise GridshareError(f"pool {pool_name} is not created on-chain; create_pool first")
    registry = client.contract("DeviceRegistry", record.address("DeviceRegistry"))
    operator = load_accounts(settings).operator
    keys = [text_id(device_id) for device_id, _, _ in wanted]
    registered = _registered(client, registry, keys)
    todo = [(k, d) for k, d, done in zip(keys, wanted, registered, strict=True) if not done]
    for start in range(0, len(todo), REGISTER_CHUNK):
        chunk = todo[start : start + REGISTER_CHUNK]
        client.transact(
            registry.functions.registerBatch(
                [k for k, _ in chunk],
                [to_checksum_address(address) for _, (_, address, _) in chunk],
                [text_id(pool) for _, (_, _, pool) in chunk],
            ),
            operator,
        )
    if todo:
        log.info("devices registered", extra={"fields": {"count": len(todo)}})
    return len(todo)


def _registered(client: ChainClient, registry: Contract, keys: list[bytes]) -> list[bool]:
    """isRegistered for each key, in JSON-RPC batches."""
    result: list[bool] = []
    for start in range(0, len(keys), 500):
        with client.w3.batch_requests() as batch:
            for key in keys[start : start + 500]:
                batch.add(registry.functions.isRegistered(key))
            result.extend(bool(r) for r in batch.execute())
    return result
