"""What a signer checks before it signs, against the chain rather than the database.

* Start values: the previous epoch's leaves are decoded from their stored ABI encoding, and
  the tree they make must have the root the AttestationRegistry holds for that epoch; then
  each device starts from its leaf's end values. Any difference and the signer refuses.
* Readings: every reading that determines a device's figures (around each period bound, and
  its first reading when no leaf gives the start) must carry the bytes the device signed,
  those bytes must say what the stored row says, and the signature must recover to the key
  the device held on-chain (DeviceRegistry, rotations included) at the reading's time. A
  device that fails is excluded from the epoch (reason in its leaf), never the pool.

Each signer recovers every signature itself: no result is shared between signers (through a
cache or the database), so one signer's fault cannot vouch for a reading to another. A
device's determining readings are distinct rows, so within one computation nothing is
recovered twice either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg

from gridshare.core.chain.device_keys import DeviceKeys, KeySpan
from gridshare.core.chain.merkle import MerkleTree
from gridshare.core.errors import GridshareError, SignatureError
from gridshare.core.signing import recover_raw
from gridshare.oracle.leaves import DeviceLeaf

EMPTY_ROOT = b"\x00" * 32


class ProvenanceRefused(GridshareError):
    """A signer cannot check what it would sign (the message says why)."""


@dataclass(frozen=True)
class StoredReading:
    """A telemetry row as stored, with the bytes its device signed."""

    device_id: str
    time: datetime
    seq: int
    energy: int
    revenue: int
    sessions: int
    signed_bytes: bytes
    sig: bytes


def signer_of(signed_bytes: bytes, sig: bytes) -> str | None:
    """The address that signed the bytes (EIP-191), None when the signature is unusable."""
    try:
        return recover_raw(signed_bytes, sig)
    except SignatureError:
        return None


def check_reading(reading: StoredReading, spans: Sequence[KeySpan]) -> tuple[str, str] | None:
    """(exclusion reason, detail) when the reading is not what its device signed, else None."""
    where = f"seq {reading.seq}"
    if not reading.signed_bytes or not reading.sig:
        return "unsigned_reading", f"{where}: no signed bytes kept"
    try:
        untrusted_payload: Any = orjson.loads(reading.signed_bytes)
        signed_time = datetime.fromisoformat(untrusted_payload["ts"])
        signed = {
            "device_id": untrusted_payload["device_id"],
            "seq": untrusted_payload["seq"],
            "energy_wh_total": untrusted_payload["energy_wh_total"],
            "revenue_minor_total": untrusted_payload["revenue_minor_total"],
            "sessions_total": untrusted_payload.get("sessions_total") or 0,
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return "reading_mismatch", f"{where}: signed bytes do not parse ({exc})"
    stored = {
        "device_id": reading.device_id,
        "seq": reading.seq,
        "energy_wh_total": reading.energy,
        "revenue_minor_total": reading.revenue,
        "sessions_total": reading.sessions,
    }
    for name, value in stored.items():
        if signed[name] != value:
            return "reading_mismatch", f"{where}: {name} stored {value}, signed {signed[name]}"
    if signed_time != reading.time:
        return "reading_mismatch", f"{where}: time stored {reading.time}, signed {signed_time}"
    if not spans:
        return "no_onchain_key", "the device is not registered on-chain"
    address = signer_of(reading.signed_bytes, reading.sig)
    key = next((s for s in spans if s.holds(signed_time)), None)
    if address is None or key is None or address != key.address:
        held = key.address if key else "none"
        return "bad_signature", f"{where}: signed by {address}, on-chain key then {held}"
    return None


def check_device(
    readings: Sequence[StoredReading], spans: Sequence[KeySpan]
) -> tuple[str, str] | None:
    """The first failing check among a device's determining readings, or None."""
    for reading in readings:
        failed = check_reading(reading, spans)
        if failed is not None:
            return failed
    return None


def onchain_root(registry: Any, pool_id: bytes, epoch: int) -> bytes | None:
    """The leaves root the AttestationRegistry holds for an epoch (None: not attested)."""
    if int(registry.functions.latestEpoch(pool_id).call()) < epoch:
        return None
    stored = registry.functions.attestation(pool_id, epoch).call()
    return bytes(stored[8])


def previous_leaves(
    conn: psycopg.Connection, pool: str, epoch: int, root: bytes | None
) -> dict[str, DeviceLeaf]:
    """The leaves of `epoch`, decoded from their stored encoding and proven by `root` (the
    on-chain one); ProvenanceRefused when they are missing or do not make that root."""
    if root is None:
        raise ProvenanceRefused(f"{pool} epoch {epoch} is not attested on-chain")
    rows = conn.execute(
        "SELECT device_id, leaf_data FROM oracle_leaves WHERE pool = %s AND epoch = %s",
        (pool, epoch),
    ).fetchall()
    leaves: dict[str, DeviceLeaf] = {}
    for device_id, data in rows:
        if data is None:
            raise ProvenanceRefused(f"{pool} epoch {epoch}: leaf of {device_id} has no encoding")
        try:
            leaves[device_id] = DeviceLeaf.from_signing_bytes(pool, device_id, bytes(data))
        except ValueError as exc:
            raise ProvenanceRefused(f"{pool} epoch {epoch}: leaf of {device_id}: {exc}") from exc
    hashes = [leaf.leaf_hash() for leaf in leaves.values()]
    rebuilt = MerkleTree(hashes).root if hashes else EMPTY_ROOT
    if rebuilt != root:
        raise ProvenanceRefused(
            f"{pool} epoch {epoch}: stored leaves make root 0x{rebuilt.hex()}, the chain holds "
            f"0x{root.hex()}"
        )
    return leaves


@dataclass
class ChainView:
    """What a signer reads from the chain: the registry's roots and the devices' keys."""

    registry: Any  # AttestationRegistry contract
    keys: DeviceKeys

    def root(self, pool_id: bytes, epoch: int) -> bytes | None:
        return onchain_root(self.registry, pool_id, epoch)
