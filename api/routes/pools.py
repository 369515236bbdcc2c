"""Pools (DB plus chain figures), their attestations, and per-device Merkle proofs."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query

from gridshare.api import evidence, pagination
from gridshare.api.chain import ChainUnavailable, PoolChainFigures, with_settlement
from gridshare.api.deps import Conn, Context
from gridshare.api.errors import ApiError, not_found
from gridshare.api.schemas import (
    Attestation,
    AttestationPage,
    ChainRecord,
    DeviceEvidence,
    ErrorResponse,
    Evidence,
    EvidencePage,
    KeyRecord,
    LeafFields,
    LeafRecord,
    Pool,
    PoolList,
    PoolRevenue,
    Proof,
    ProofCheck,
)
from gridshare.core.chain.merkle import MerkleTree
from gridshare.oracle.leaves import LEAF_NAMES, LEAF_TYPES, DeviceLeaf

router = APIRouter(prefix="/v1/pools", tags=["pools"])
log = logging.getLogger(__name__)

PoolName = Annotated[
    str, Path(description="e.g. pv-plant-1", max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
]
Epoch = Annotated[int, Path(ge=1, le=2**63 - 1)]
DeviceId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CURRENCY = "HKD"
ATTESTED_STATES = ("submitted", "confirmed")

POOLS_SQL = """
    SELECT p.name, p.pool_id, p.device_type, p.share_bps, p.token_address, p.token_symbol,
           coalesce(d.devices, 0), coalesce(d.online, 0),
           coalesce(e.revenue, 0), e.latest
    FROM pools p
    LEFT JOIN LATERAL (
        SELECT count(*) AS devices, count(*) FILTER (WHERE s.online) AS online
        FROM devices x LEFT JOIN device_state s USING (device_id) WHERE x.pool = p.name
    ) d ON true
    LEFT JOIN LATERAL (
        SELECT sum(revenue_minor) AS revenue, max(epoch) AS latest FROM oracle_epochs o
        WHERE o.pool = p.name AND o.state = ANY(%(states)s)
    ) e ON true
"""
ATTESTATION_COLUMNS = """
    pool, epoch, period_start, period_end, energy_wh, revenue_minor, investor_amount,
    device_count, leaves_root, coalesce(signers, '{}'), state, tx_hash
"""


async def _pools(ctx: Context, conn: Conn, name: str | None) -> list[Pool]:
    rows = await _pool_rows(conn, name)
    pools = []
    for r in rows:
        figures = await _chain_figures(ctx, r[0])
        revenue = None
        if figures is not None:
            revenue = PoolRevenue(
                currency=CURRENCY,
                attested_minor=int(r[8]),
                investor_attested=str(figures.investor_attested),
                funded=str(figures.funded),
                owed=str(figures.owed),
                pending=str(figures.pending),
                distributed=str(figures.distributed),
                claimed=str(figures.claimed),
                stablecoin_decimals=figures.stablecoin_decimals,
            )
        pools.append(
            Pool(
                name=r[0],
                pool_id=r[1],
                device_type=r[2],
                share_bps=r[3],
                token_address=figures.token if figures else r[4],
                token_symbol=figures.symbol if figures else r[5],
                token_supply=str(figures.supply) if figures else None,
                token_decimals=figures.decimals if figures else None,
                devices=r[6],
                devices_online=r[7],
                latest_epoch=figures.latest_epoch if figures else r[9],
                revenue=revenue,
                chain_ok=figures is not None,
            )
        )
    return pools


_row_cache: dict[str | None, tuple[float, list[tuple]]] = {}
ROW_TTL = 2.0  # seconds: device counts over a large pool are not worth recounting per request


async def _pool_rows(conn: Conn, name: str | None) -> list[tuple]:
    hit = _row_cache.get(name)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    sql = POOLS_SQL + (" WHERE p.name = %(name)s" if name is not None else "")
    sql += " ORDER BY p.name"
    cur = await conn.execute(sql, {"states": list(ATTESTED_STATES), "name": name})
    rows = await cur.fetchall()
    if len(_row_cache) > 1000:
        _row_cache.clear()
    _row_cache[name] = (time.monotonic() + ROW_TTL, rows)
    return rows


async def _chain_figures(ctx: Context, name: str) -> PoolChainFigures | None:
    try:
        return await ctx.chain.pool(name)
    except ChainUnavailable:
        return None
    except Exception as exc:
        log.warning("chain read failed", extra={"fields": {"pool": name, "error": str(exc)}})
        return None


@router.get("", response_model=PoolList, summary="Every pool with token and revenue figures")
async def list_pools(ctx: Context, conn: Conn) -> PoolList:
    return PoolList(items=await _pools(ctx, conn, None))


@router.get(
    "/{pool}",
    response_model=Pool,
    summary="A pool: token, supply, devices, revenue attested / funded / distributed",
    responses={404: {"model": ErrorResponse, "description": "unknown pool"}},
)
async def get_pool(ctx: Context, conn: Conn, pool: PoolName) -> Pool:
    found = await _pools(ctx, conn, pool)
    if not found:
        raise not_found("pool", pool)
    return found[0]


async def _known_pool(conn: Conn, pool: str) -> str:
    cur = await conn.execute("SELECT pool_id FROM pools WHERE name = %s", (pool,))
    row = await cur.fetchone()
    if row is None:
        raise not_found("pool", pool)
    return row[0]


@router.get(
    "/{pool}/attestations",
    response_model=AttestationPage,
    summary="Attestations, newest epoch first: period, figures, Merkle root, signers, tx",
    responses={404: {"model": ErrorResponse, "description": "unknown pool"}},
)
async def attestations(
    ctx: Context,
    conn: Conn,
    pool: PoolName,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AttestationPage:
    pool_id = await _known_pool(conn, pool)
    listing = pagination.Listing(f"SELECT {ATTESTATION_COLUMNS} FROM oracle_epochs")
    listing.where("pool = %s", pool)
    listing.after("attestations", cursor, "epoch < %s", (int,))
    rows, more = await listing.page(conn, "epoch DESC", limit)
    items = [
        Attestation(
            pool=r[0],
            epoch=r[1],
            period_start=r[2],
            period_end=r[3],
            energy_wh=int(r[4]),
            revenue_minor=int(r[5]),
            investor_amount=str(int(r[6])),
            device_count=r[7],
            merkle_root=r[8],
            signers=list(r[9]),
            state=r[10],
            tx_hash=r[11],
        )
        for r in rows
    ]
    next_cursor = pagination.encode("attestations", [items[-1].epoch]) if more else None
    items = await with_settlement(ctx.chain, pool_id, items)
    return AttestationPage(items=items, next_cursor=next_cursor)


LEAF_SQL = """
    SELECT l.leaf_data, l.leaf, e.leaves_root
    FROM oracle_leaves l JOIN oracle_epochs e USING (pool, epoch)
    WHERE l.pool = %s AND l.epoch = %s AND l.device_id = %s
"""


_trees: dict[str, MerkleTree] = {}  # by root: an epoch's leaves never change once computed
MAX_TREES = 32


async def _tree(conn: Conn, pool: str, epoch: int, root: str) -> MerkleTree:
    tree = _trees.get(root)
    if tree is None:
        cur = await conn.execute(
            "SELECT leaf FROM oracle_leaves WHERE pool = %s AND epoch = %s", (pool, epoch)
        )
        tree = MerkleTree([bytes.fromhex(r[0][2:]) for r in await cur.fetchall()])
        if len(_trees) >= MAX_TREES:
            _trees.pop(next(iter(_trees)))
        _trees[root] = tree
    return tree


async def _proof(conn: Conn, pool: str, epoch: int, device_id: str) -> Proof:
    pool_id = await _known_pool(conn, pool)
    cur = await conn.execute(LEAF_SQL, (pool, epoch, device_id))
    row = await cur.fetchone()
    if row is None:
        raise ApiError(
            404, "not_found", f"no leaf for device {device_id!r} in {pool} epoch {epoch}"
        )
    leaf_row = DeviceLeaf.from_signing_bytes(pool, device_id, bytes(row[0]))
    leaf_hex, root = row[1], row[2]
    tree = await _tree(conn, pool, epoch, root)
    if "0x" + tree.root.hex() != root or "0x" + leaf_row.leaf_hash().hex() != leaf_hex:
        raise ApiError(500, "internal", "stored leaves do not match the stored root")
    values: list[str] = []
    for v in leaf_row.values():
        values.append("0x" + v.hex() if isinstance(v, bytes) else str(v))
    return Proof(
        pool=pool,
        pool_id=pool_id,
        epoch=epoch,
        device_id=device_id,
        leaf=leaf_hex,
        fields=LeafFields(names=list(LEAF_NAMES), types=list(LEAF_TYPES), values=values),
        proof=["0x" + p.hex() for p in tree.proof(bytes.fromhex(leaf_hex[2:]))],
        merkle_root=root,
    )


@router.get(
    "/{pool}/attestations/{epoch}/proof/{device_id}",
    response_model=Proof,
    summary="A device's leaf and Merkle proof, verifiable against the on-chain root",
    responses={404: {"model": ErrorResponse, "description": "unknown pool, epoch or device"}},
)
async def proof(conn: Conn, pool: PoolName, epoch: Epoch, device_id: DeviceId) -> Proof:
    """Check it with `AttestationRegistry.verifyLeaf(pool_id, epoch, leaf, proof)`, or with
    the `/verify` endpoint below, which makes that call."""
    return await _proof(conn, pool, epoch, device_id)


@router.get(
    "/{pool}/attestations/{epoch}/proof/{device_id}/verify",
    response_model=ProofCheck,
    summary="The proof checked on-chain with verifyLeaf",
    responses={
        404: {"model": ErrorResponse, "description": "unknown pool, epoch or device"},
        503: {"model": ErrorResponse, "description": "chain unreachable"},
    },
)
async def verify(
    ctx: Context, conn: Conn, pool: PoolName, epoch: Epoch, device_id: DeviceId
) -> ProofCheck:
    found = await _proof(conn, pool, epoch, device_id)
    try:
        valid, root, registry = await ctx.chain.verify_leaf(
            found.pool_id, epoch, found.leaf, found.proof
        )
    except Exception as exc:
        raise ApiError(503, "chain_unavailable", "chain unreachable; retry later") from exc
    start, end, cutoff, _, _ = await _head(conn, pool, epoch)
    readings = (await evidence.determining_readings(conn, [device_id], start, end, cutoff))[
        device_id
    ]
    try:
        spans = (await ctx.chain.device_keys()).spans(device_id)
    except Exception as exc:
        raise ApiError(503, "chain_unavailable", "chain unreachable; retry later") from exc
    problems = [p for r in readings if (p := evidence.check(device_id, r, spans))]
    rows = await evidence.leaf_rows(conn, pool, epoch, "", 1, only=device_id)
    return ProofCheck(
        pool=pool,
        epoch=epoch,
        device_id=device_id,
        leaf=found.leaf,
        valid=valid,
        onchain_root=root if int(root, 16) else None,
        registry=registry,
        signatures=len(readings),
        signatures_verified=len(readings) - len(problems),
        signature_problems=problems,
        excluded=rows[0][3] or None if rows else None,
    )


# ----- evidence -----


def _values(leaf: DeviceLeaf) -> list[str]:
    return ["0x" + v.hex() if isinstance(v, bytes) else str(v) for v in leaf.values()]


def _leaf(pool: str, device_id: str, data: bytes | None) -> DeviceLeaf:
    if data is None:
        raise ApiError(500, "internal", f"the leaf of {device_id} has no stored encoding")
    return DeviceLeaf.from_signing_bytes(pool, device_id, bytes(data))


async def _head(conn: Conn, pool: str, epoch: int) -> tuple:
    head = await evidence.epoch_head(conn, pool, epoch)
    if head is None:
        raise ApiError(404, "not_found", f"no epoch {epoch} for pool {pool}")
    return head


async def _chain_record(ctx: Context) -> ChainRecord | None:
    try:
        record = ctx.chain.record()
    except ChainUnavailable:
        return None
    return ChainRecord(
        chain_id=record.chain_id,
        attestation_registry=record.address("AttestationRegistry"),
        device_registry=record.address("DeviceRegistry"),
        deployment_block=record.block,
    )


async def _leaf_record(conn: Conn, pool: str, epoch: int, device_id: str) -> LeafRecord | None:
    head = await evidence.epoch_head(conn, pool, epoch)
    if head is None:
        return None
    cur = await conn.execute(LEAF_SQL, (pool, epoch, device_id))
    row = await cur.fetchone()
    if row is None:
        return None
    leaf = _leaf(pool, device_id, row[0])
    tree = await _tree(conn, pool, epoch, row[2])
    return LeafRecord(
        epoch=epoch,
        leaf=row[1],
        fields=LeafFields(names=list(LEAF_NAMES), types=list(LEAF_TYPES), values=_values(leaf)),
        proof=["0x" + p.hex() for p in tree.proof(bytes.fromhex(row[1][2:]))],
        merkle_root=row[2],
    )


@router.get(
    "/{pool}/attestations/{epoch}/evidence/{device_id}",
    response_model=Evidence,
    summary="Everything needed to re-derive a device's leaf: signed readings, the previous "
    "leaf and proof, the device's on-chain keys, the exclusion reason",
    responses={404: {"model": ErrorResponse, "description": "unknown pool, epoch or device"}},
)
async def device_evidence(
    ctx: Context, conn: Conn, pool: PoolName, epoch: Epoch, device_id: DeviceId
) -> Evidence:
    """The readings are those the oracle derives the leaf from: the last reading before and
    the first on or after each period bound, and the device's first reading (its start when
    no previous leaf carries it), all received by the epoch's data cutoff. Check each with
    recover(EIP-191(payload), sig) against the key the device held at the reading's time."""
    pool_id = await _known_pool(conn, pool)
    start, end, cutoff, _, state = await _head(conn, pool, epoch)
    rows = await evidence.leaf_rows(conn, pool, epoch, "", 1, only=device_id)
    if not rows:
        raise ApiError(
            404, "not_found", f"no leaf for device {device_id!r} in {pool} epoch {epoch}"
        )
    current = await _leaf_record(conn, pool, epoch, device_id)
    assert current is not None
    previous = await _leaf_record(conn, pool, epoch - 1, device_id) if epoch > 1 else None
    readings = await evidence.determining_readings(conn, [device_id], start, end, cutoff)
    keys = None
    try:
        book = await ctx.chain.device_keys()
        keys = [KeyRecord(**k.as_json()) for k in book.spans(device_id)]  # type: ignore[arg-type]
    except Exception as exc:
        log.warning("key history unreadable", extra={"fields": {"error": str(exc)}})
    return Evidence(
        pool=pool,
        pool_id=pool_id,
        epoch=epoch,
        device_id=device_id,
        state=state,
        period_start=start,
        period_end=end,
        data_cutoff=cutoff,
        leaf=current,
        previous=previous,
        exclusion=evidence.exclusion(rows[0][3], rows[0][4]),
        readings=readings[device_id],
        keys=keys,
        chain=await _chain_record(ctx),
    )


@router.get(
    "/{pool}/attestations/{epoch}/evidence",
    response_model=EvidencePage,
    summary="An epoch's evidence for every device, a page at a time (by device id)",
    responses={404: {"model": ErrorResponse, "description": "unknown pool or epoch"}},
)
async def epoch_evidence(
    ctx: Context,
    conn: Conn,
    pool: PoolName,
    epoch: Epoch,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EvidencePage:
    """Each device's leaf values, the previous epoch's leaf values (rebuild that epoch's tree
    from them and compare its root with the chain's) and its determining signed readings."""
    pool_id = await _known_pool(conn, pool)
    start, end, cutoff, root, state = await _head(conn, pool, epoch)
    after = ""
    if cursor is not None:
        (after,) = pagination.decode("evidence", cursor, (str,))
    rows = await evidence.leaf_rows(conn, pool, epoch, str(after), limit + 1)
    page = rows[:limit]
    readings = await evidence.determining_readings(conn, [r[0] for r in page], start, end, cutoff)
    items = [
        DeviceEvidence(
            device_id=r[0],
            leaf=r[1],
            values=_values(_leaf(pool, r[0], r[2])),
            previous_values=_values(_leaf(pool, r[0], r[5])) if r[5] is not None else None,
            exclusion=evidence.exclusion(r[3], r[4]),
            readings=readings[r[0]],
        )
        for r in page
    ]
    more = len(rows) > limit
    return EvidencePage(
        pool=pool,
        pool_id=pool_id,
        epoch=epoch,
        state=state,
        period_start=start,
        period_end=end,
        data_cutoff=cutoff,
        merkle_root=root,
        names=list(LEAF_NAMES),
        types=list(LEAF_TYPES),
        chain=await _chain_record(ctx),
        items=items,
        next_cursor=pagination.encode("evidence", [page[-1][0]]) if more else None,
    )
