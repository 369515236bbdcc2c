"""Pure checks: the leaf encoding, the tree layout against OpenZeppelin's own test vector,
and the period grid."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from eth_abi import encode

from gridshare.core.chain.merkle import MerkleTree, leaf_hash, verify
from gridshare.core.timegrid import align
from gridshare.oracle.leaves import LEAF_TYPES, DeviceLeaf
from gridshare.oracle.periods import PoolGrid


def random_leaf(rng: random.Random, size: int = 64) -> DeviceLeaf:
    return DeviceLeaf(
        pool=f"pv-plant-{rng.randrange(100)}",
        epoch=rng.randrange(1, 2**64),
        device_id=f"pv-{rng.randrange(10**6):06d}",
        energy_wh=rng.randrange(2**size),
        revenue_minor=rng.randrange(2**size),
        sessions=rng.randrange(2**64),
        readings=rng.randrange(2**32),
        first_seq=rng.randrange(2**64),
        last_seq=rng.randrange(2**64),
        uptime_seconds=rng.randrange(2**32),
        meter_resets=rng.randrange(2**32),
        adjustment_energy_wh=rng.randrange(-(2**60), 2**60),
        adjustment_revenue_minor=rng.randrange(-(2**60), 2**60),
        end_energy_wh=rng.randrange(2**size),
        end_revenue_minor=rng.randrange(2**size),
        end_sessions=rng.randrange(2**64),
        excluded=rng.randrange(7),
    )


def test_fast_encoding_is_abi_encode() -> None:
    rng = random.Random(7)
    for i in range(400):
        leaf = random_leaf(rng, 64 if i % 2 else 250)  # the packed and the general path
        assert leaf.signing_bytes() == encode(list(LEAF_TYPES), list(leaf.values()))
        assert leaf.leaf_hash() == leaf_hash(LEAF_TYPES, leaf.values())


def test_encoding_at_the_packed_widths_edges() -> None:
    base = random_leaf(random.Random(3))
    for change in (
        {"energy_wh": 2**64 - 1, "readings": 2**32 - 1, "adjustment_energy_wh": -(2**63)},
        {"energy_wh": 2**64, "uptime_seconds": 0, "adjustment_revenue_minor": 2**63},
        {"meter_resets": 2**32 - 1, "adjustment_energy_wh": -(2**63) - 1},
    ):
        leaf = dataclasses.replace(base, **change)
        assert leaf.signing_bytes() == encode(list(LEAF_TYPES), list(leaf.values()))
    for bad in ({"readings": 2**32}, {"energy_wh": -1}, {"sessions": 2**64}, {"excluded": 256}):
        with pytest.raises(ValueError):
            dataclasses.replace(base, **bad).signing_bytes()


def test_a_leaf_decodes_from_its_encoding() -> None:
    rng = random.Random(11)
    for i in range(50):
        leaf = random_leaf(rng, 64 if i % 2 else 250)
        assert (
            DeviceLeaf.from_signing_bytes(leaf.pool, leaf.device_id, leaf.signing_bytes()) == leaf
        )
    with pytest.raises(ValueError):
        DeviceLeaf.from_signing_bytes("other-pool", leaf.device_id, leaf.signing_bytes())
    with pytest.raises(ValueError):
        DeviceLeaf.from_signing_bytes(leaf.pool, leaf.device_id, leaf.signing_bytes()[:-1])


def test_tree_matches_openzeppelin_standard_tree_dump() -> None:
    """@openzeppelin/merkle-tree test/dumps/standard-v1.sorted.1_0_6.json: leaf encoding
    ["string"], values "a".."f"."""
    hashes = [leaf_hash(["string"], [v]) for v in "abcdef"]
    tree = MerkleTree(hashes)
    assert tree.root.hex() == "6deb52b5da8fd108f79fab00341f38d2587896634c646ee52e49f845680a70c8"
    for h in hashes:
        assert verify(tree.proof(h), tree.root, h)


def test_grid_is_aligned_to_the_unix_epoch() -> None:
    day = 86_400
    moment = datetime(2026, 11, 30, 6, 0, 12, 345000, tzinfo=UTC)
    assert align(moment, timedelta(seconds=day)) == datetime(2026, 11, 30, tzinfo=UTC)
    assert align(moment, timedelta(hours=1)) == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert align(moment, timedelta(hours=1), up=True) == datetime(2026, 11, 30, 7, tzinfo=UTC)
    assert align(datetime(2026, 11, 30, tzinfo=UTC), timedelta(hours=1), up=True).hour == 0
    odd = align(moment, timedelta(seconds=7))
    assert odd.timestamp() % 7 == 0 and timedelta(0) <= moment - odd < timedelta(seconds=7)
    grid = PoolGrid("p", datetime(2026, 11, 1, tzinfo=UTC), day)
    assert grid.bounds(1) == (grid.epoch1_start, grid.epoch1_start + timedelta(days=1))
    assert grid.bounds(3)[0] == grid.bounds(2)[1]
