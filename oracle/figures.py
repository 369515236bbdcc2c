"""An epoch's attestation computed from the database: device leaves, Merkle root, pool figure.

The aggregator and every signer call `compute_epoch` on their own connection; equal data gives
an equal EIP-712 digest, byte for byte.

Pool figure: energy and revenue are the sums of the device figures; the investor amount is
revenue (HKD cents) x share (bps): cents -> 6-decimal stablecoin units is x10^4 and bps is
/10^4, so the product is exact and no rounding happens anywhere (no FX: the stablecoin is HKD).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from gridshare.core.chain.attestation import Attestation, investor_amount
from gridshare.core.chain.merkle import MerkleTree
from gridshare.oracle.leaves import DeviceLeaf, text_id
from gridshare.oracle.meters import DeviceFigures, device_figures
from gridshare.oracle.periods import PoolGrid, to_unix
from gridshare.oracle.settings import OracleSettings


@dataclass(frozen=True)
class ComputedEpoch:
    """Everything an epoch's attestation commits to, and how it was derived."""

    pool: str
    epoch: int
    period_start: datetime
    period_end: datetime
    data_cutoff: datetime
    share_bps: int
    devices: list[DeviceFigures]
    leaves: list[DeviceLeaf]
    leaf_hashes: list[bytes]
    attestation: Attestation

    @property
    def silent_devices(self) -> int:
        return sum(1 for d in self.devices if d.readings == 0)

    @property
    def adjustment_energy_wh(self) -> int:
        return sum(d.adjustment_energy_wh for d in self.devices)

    @property
    def adjustment_revenue_minor(self) -> int:
        return sum(d.adjustment_revenue_minor for d in self.devices)


def pool_share_bps(conn: psycopg.Connection, pool: str) -> int:
    row = conn.execute("SELECT share_bps FROM pools WHERE name = %s", (pool,)).fetchone()
    if row is None:
        raise LookupError(f"pool {pool} is unknown")
    return int(row[0])


def pool_money_terms(conn: psycopg.Connection, pool: str) -> tuple[int, int]:
    """(currency minor-unit exponent, stablecoin decimals) of the pool, as on-chain."""
    row = conn.execute(
        "SELECT currency_exponent, coin_decimals FROM pools WHERE name = %s", (pool,)
    ).fetchone()
    if row is None:
        raise LookupError(f"pool {pool} is unknown")
    return int(row[0]), int(row[1])


def compute_epoch(
    conn: psycopg.Connection,
    grid: PoolGrid,
    epoch: int,
    cutoff: datetime,
    prev_cutoff: datetime | None,
    settings: OracleSettings,
) -> ComputedEpoch:
    """Read the period's telemetry and build the epoch's leaves, root and attestation."""
    start, end = grid.bounds(epoch)
    share_bps = pool_share_bps(conn, grid.pool)
    figures = device_figures(
        conn, grid.pool, epoch, start, end, cutoff, prev_cutoff, settings.reading_interval_seconds
    )
    leaves = [
        DeviceLeaf(
            pool=grid.pool,
            epoch=epoch,
            device_id=f.device_id,
            energy_wh=f.energy_wh,
            revenue_minor=f.revenue_minor,
            sessions=f.sessions,
            readings=f.readings,
            first_seq=f.first_seq,
            last_seq=f.last_seq,
            uptime_seconds=f.uptime_seconds,
            meter_resets=f.meter_resets,
            adjustment_energy_wh=f.adjustment_energy_wh,
            adjustment_revenue_minor=f.adjustment_revenue_minor,
        )
        for f in figures
    ]
    hashes = [leaf.leaf_hash() for leaf in leaves]
    root = MerkleTree(hashes).root if hashes else b"\x00" * 32
    revenue = sum(f.revenue_minor for f in figures)
    attestation = Attestation(
        pool_id=text_id(grid.pool),
        epoch=epoch,
        period_start=to_unix(start),
        period_end=to_unix(end),
        energy_wh=sum(f.energy_wh for f in figures),
        revenue_minor=revenue,
        investor_amount=investor_amount(revenue, share_bps, *pool_money_terms(conn, grid.pool)),
        device_count=len(leaves),
        leaves_root=root,
    )
    return ComputedEpoch(
        pool=grid.pool,
        epoch=epoch,
        period_start=start,
        period_end=end,
        data_cutoff=cutoff,
        share_bps=share_bps,
        devices=figures,
        leaves=leaves,
        leaf_hashes=hashes,
        attestation=attestation,
    )
