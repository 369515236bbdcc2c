"""The chain step of provisioning: each pool's token, each device's registration, key rotation.

Works from the chain's own state (through the idempotent `create_pool` / `register_devices` of
`gridshare.core.chain`), then copies token addresses and registration transactions into the
database, so a re-run after an interruption, or against a reset chain, converges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from eth_utils import keccak, to_checksum_address

from gridshare.core import chain
from gridshare.core.chain.pools import token_symbol
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings

DEVICE_REGISTERED = "0x" + keccak(text="DeviceRegistered(bytes32,address,bytes32)").hex()
log = logging.getLogger(__name__)


@dataclass
class ChainReport:
    """What the chain step did."""

    pools: dict[str, str]  # pool name -> token address
    devices_registered_now: int


def register(settings: Settings, conn: psycopg.Connection, pools: list[str]) -> ChainReport:
    """Create the pools' tokens and register their devices; record both in the database."""
    client = chain.ChainClient(settings)
    rows = conn.execute(
        "SELECT name, device_type, share_bps FROM pools WHERE name = ANY(%s) AND NOT ephemeral",
        (pools,),
    ).fetchall()
    tokens = {}
    for name, device_type, share_bps in rows:
        record = chain.create_pool(settings, name, device_type, share_bps, client=client)
        tokens[name] = record.token
        conn.execute(
            "UPDATE pools SET token_address = %s, token_symbol = %s WHERE name = %s",
            (record.token, token_symbol(name), name),
        )
    devices = conn.execute(
        "SELECT device_id, address, pool FROM devices WHERE pool = ANY(%s) AND active"
        " ORDER BY device_id",
        (pools,),
    ).fetchall()
    registered_now = chain.register_devices(settings, devices, client=client)
    _record_registrations(settings, conn, client, {d[0] for d in devices})
    return ChainReport(pools=tokens, devices_registered_now=registered_now)


def rotate_key(settings: Settings, device_id: str, new_address: str) -> str:
    """Point the DeviceRegistry entry of `device_id` at a new signer; the transaction hash."""
    client = chain.ChainClient(settings)
    record = chain.read_deployment(settings)
    registry = client.contract("DeviceRegistry", record.address("DeviceRegistry"))
    operator = chain.load_accounts(settings).operator
    receipt = client.transact(
        registry.functions.rotateKey(text_id(device_id), to_checksum_address(new_address)),
        operator,
    )
    return "0x" + bytes(receipt["transactionHash"]).hex()


def deactivate(settings: Settings, device_id: str) -> bool:
    """Deactivate `device_id` in the DeviceRegistry; False if it was inactive already."""
    client = chain.ChainClient(settings)
    record = chain.read_deployment(settings)
    registry = client.contract("DeviceRegistry", record.address("DeviceRegistry"))
    _, _, active = client.call(registry.functions.device(text_id(device_id)))
    if not active:
        return False
    operator = chain.load_accounts(settings).operator
    client.transact(registry.functions.deactivate(text_id(device_id)), operator)
    return True


def _record_registrations(
    settings: Settings, conn: psycopg.Connection, client: chain.ChainClient, device_ids: set[str]
) -> None:
    """Copy each device's registration transaction (from the DeviceRegistered logs)."""
    record = chain.read_deployment(settings)
    logs = client.w3.eth.get_logs(
        {
            "address": to_checksum_address(record.address("DeviceRegistry")),
            "fromBlock": record.block,
            "toBlock": "latest",
            "topics": [DEVICE_REGISTERED],
        }
    )
    by_key = {
        bytes(entry["topics"][1]): "0x" + bytes(entry["transactionHash"]).hex() for entry in logs
    }
    updates = [
        (by_key[text_id(device_id)], device_id)
        for device_id in device_ids
        if text_id(device_id) in by_key
    ]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "UPDATE devices SET registered_tx = %s, updated_at = now()"
            " WHERE device_id = %s AND registered_tx IS DISTINCT FROM %s",
            [(tx, device_id, tx) for tx, device_id in updates],
        )
    log.info(
        "chain registrations recorded",
        extra={"fields": {"devices": len(updates), "devices_checked": len(device_ids)}},
    )
