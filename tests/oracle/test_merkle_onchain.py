"""The Python tree against the registry's `verifyLeaf`, for many random trees (one leaf, odd
and even sizes): every proof verifies, a tampered leaf or proof does not."""

from __future__ import annotations

import random

import psycopg

from gridshare.core.chain.attestation import Attestation, sign_attestation, submit_attestation
from gridshare.core.chain.merkle import MerkleTree
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.oracle.context import OracleContext
from tests.oracle.conftest import make_pool
from tests.oracle.test_leaves import random_leaf

SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 33, 100]


def test_random_trees_verify_on_chain(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection
) -> None:
    pool = make_pool(stack_settings, db, "pv_plant", devices=0, share_bps=1_000)
    pid = text_id(pool.name)
    rng = random.Random(2026)
    verify = ctx.registry.functions.verifyLeaf
    for epoch, size in enumerate(SIZES, start=1):
        leaves = [random_leaf(rng) for _ in range(size)]
        hashes = [leaf.leaf_hash() for leaf in leaves]
        tree = MerkleTree(hashes)
        attestation = Attestation(
            pid, epoch, epoch * 100, epoch * 100 + 100, 0, 0, 0, size, tree.root
        )
        signatures = [
            sign_attestation(attestation, oracle, ctx.signing_context(pool.name))
            for oracle in ctx.accounts.oracles[: ctx.threshold]
        ]
        submit_attestation(ctx.client, ctx.registry_address, attestation, signatures, ctx.submitter)
        for leaf_hash in hashes:
            proof = tree.proof(leaf_hash)
            assert ctx.client.call(verify(pid, epoch, leaf_hash, proof))
        victim = rng.choice(leaves)
        proof = tree.proof(victim.leaf_hash())
        forged = victim.__class__(**{**victim.__dict__, "revenue_minor": victim.revenue_minor + 1})
        assert not ctx.client.call(verify(pid, epoch, forged.leaf_hash(), proof))
        if proof:
            bad = [bytes(32), *proof[1:]]
            assert not ctx.client.call(verify(pid, epoch, victim.leaf_hash(), bad))
        assert not ctx.client.call(verify(pid, epoch + 1, victim.leaf_hash(), proof))
