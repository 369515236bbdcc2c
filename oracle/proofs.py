"""A device's leaf and Merkle proof for an attested epoch, verifiable against the on-chain
root with `verifyLeaf(poolId, epoch, leaf, proof)` (what the API serves).

`LEAVES_SQL` and `proof_from_rows` are split from `device_proof` so an async caller (the API)
can run the query on its own connection and build the proof with the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from gridshare.core.chain.merkle import MerkleTree
from gridshare.oracle.leaves import DeviceLeaf

EPOCH_SQL = "SELECT leaves_root, state FROM oracle_epochs WHERE pool = %s AND epoch = %s"
LEAVES_SQL = """SELECT device_id, leaf, leaf_data
                FROM oracle_leaves WHERE pool = %s AND epoch = %s"""


@dataclass(frozen=True)
class LeafProof:
    leaf: DeviceLeaf
    leaf_hash: bytes
    proof: list[bytes]
    root: bytes
    state: str  # the epoch's state: only `confirmed` roots are on-chain

    def as_json(self) -> dict[str, object]:
        return {
            "pool": self.leaf.pool,
            "epoch": self.leaf.epoch,
            "device_id": self.leaf.device_id,
            "state": self.state,
            "fields": self.leaf.as_json(),
            "leaf": "0x" + self.leaf_hash.hex(),
            "proof": ["0x" + p.hex() for p in self.proof],
            "root": "0x" + self.root.hex(),
        }


def proof_from_rows(
    pool: str, epoch: int, device_id: str, state: str, rows: Sequence[Sequence[Any]]
) -> LeafProof | None:
    """The proof from the epoch's LEAVES_SQL rows, or None if the device has no leaf."""
    mine = next((r for r in rows if r[0] == device_id), None)
    if mine is None:
        return None
    tree = MerkleTree([bytes.fromhex(r[1].removeprefix("0x")) for r in rows])
    leaf = DeviceLeaf.from_signing_bytes(pool, device_id, bytes(mine[2]))
    leaf_hash = bytes.fromhex(mine[1].removeprefix("0x"))
    if leaf.leaf_hash() != leaf_hash:
        raise ValueError(f"stored leaf of {device_id} epoch {epoch} does not match its fields")
    return LeafProof(leaf, leaf_hash, tree.proof(leaf_hash), tree.root, state)


def device_proof(
    conn: psycopg.Connection, pool: str, epoch: int, device_id: str
) -> LeafProof | None:
    """The proof, or None when the epoch or the device's leaf does not exist."""
    head = conn.execute(EPOCH_SQL, (pool, epoch)).fetchone()
    if head is None:
        return None
    rows = conn.execute(LEAVES_SQL, (pool, epoch)).fetchall()
    return proof_from_rows(pool, epoch, device_id, head[1], rows)
