"""An epoch's attestation computed from the database: device leaves, Merkle root, pool figure.

The aggregator and every signer call `compute_epoch` on their own connection and their own
view of the chain; equal data gives an equal EIP-712 digest, byte for byte. Start values come
from the previous epoch's leaves proven by the on-chain root, and every reading a figure is
derived from is checked against the device's on-chain key (provenance.py). A device that
fails a check, or is flagged, or whose figure exceeds what its rated power can deliver, is
excluded: its leaf carries the reason, zero figures, and its start values as end values, so
its revenue carries into the first epoch it passes again. The pool still settles.

Pool figure: energy and revenue are the sums of the device figures; the investor amount is
revenue (HKD cents) x share (bps): cents -> 6-decimal stablecoin units is x10^4 and bps is
/10^4, so the product is exact and no rounding happens anywhere (no FX: the stablecoin is HKD).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

import psycopg

from gridshare.core.chain.attestation import Attestation, investor_amount
from gridshare.core.chain.merkle import MerkleTree
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.core.timegrid import to_unix
from gridshare.oracle.leaves import EXCLUSIONS, DeviceLeaf
from gridshare.oracle.meters import DeviceFigures, device_figures
from gridshare.oracle.periods import PoolGrid
from gridshare.oracle.provenance import ChainView, check_device, previous_leaves


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
    exclusions: dict[str, tuple[str, str]]  # device id -> (reason, detail)

    @property
    def silent_devices(self) -> int:
        return sum(
            1 for d in self.devices if d.readings == 0 and d.device_id not in self.exclusions
        )

    @property
    def adjustment_energy_wh(self) -> int:
        return sum(d.adjustment_energy_wh for d in self.devices)

    @property
    def adjustment_revenue_minor(self) -> int:
        return sum(d.adjustment_revenue_minor for d in self.devices)


def pool_terms(conn: psycopg.Connection, pool: str) -> tuple[int, int]:
    """(investor share in bps, maximum tariff in minor units per kWh)."""
    return _pool_pair(conn, pool, "share_bps, max_tariff_minor_per_kwh")


def exclusion(
    f: DeviceFigures, chain: ChainView, period_seconds: int, max_tariff: int, margin: float
) -> tuple[str, str] | None:
    """Why the device's figures cannot count this epoch, or None."""
    if f.flagged:
        return "flagged", "the device has an open flag (conflicting readings); clear it first"
    failed = check_device(f.determining, chain.keys.spans(f.device_id))
    if failed is not None:
        return failed
    energy = f.energy_wh - f.adjustment_energy_wh  # within the period, late data aside
    revenue = f.revenue_minor - f.adjustment_revenue_minor
    energy_cap = int(f.rated_power_w * period_seconds / 3600 * margin)
    if energy > energy_cap:
        return "implausible", f"energy {energy} Wh in the period, rated power allows {energy_cap}"
    revenue_cap = int(max(energy, 0) * max_tariff / 1000 * margin)
    if revenue > revenue_cap:
        return (
            "implausible",
            f"revenue {revenue} for {energy} Wh, maximum tariff allows {revenue_cap}",
        )
    return None


def excluded_figures(f: DeviceFigures) -> DeviceFigures:
    """Zero figures, end values = start values (what the next epoch starts from)."""
    return dataclasses.replace(
        f,
        energy_wh=0,
        revenue_minor=0,
        sessions=0,
        readings=0,
        first_seq=0,
        last_seq=0,
        uptime_seconds=0,
        meter_resets=0,
        adjustment_energy_wh=0,
        adjustment_revenue_minor=0,
        end_energy_wh=f.start_energy_wh if f.carried else 0,
        end_revenue_minor=f.start_revenue_minor if f.carried else 0,
        end_sessions=f.start_sessions if f.carried else 0,
        start_energy_wh=f.start_energy_wh if f.carried else 0,
        start_revenue_minor=f.start_revenue_minor if f.carried else 0,
        start_sessions=f.start_sessions if f.carried else 0,
    )


def pool_money_terms(conn: psycopg.Connection, pool: str) -> tuple[int, int]:
    """(currency minor-unit exponent, stablecoin decimals) of the pool, as on-chain."""
    return _pool_pair(conn, pool, "currency_exponent, coin_decimals")


def _pool_pair(conn: psycopg.Connection, pool: str, columns: str) -> tuple[int, int]:
    """Two integer columns of the pool's row (`columns` is one of the constants above)."""
    row = conn.execute(f"SELECT {columns} FROM pools WHERE name = %s", (pool,)).fetchone()
    if row is None:
        raise LookupError(f"pool {pool} is unknown")
    return int(row[0]), int(row[1])


def compute_epoch(
    conn: psycopg.Connection,
    grid: PoolGrid,
    epoch: int,
    cutoff: datetime,
    prev_cutoff: datetime | None,
    settings: Settings,
    chain: ChainView,
) -> ComputedEpoch:
    """Read the period's telemetry and build the epoch's leaves, root and attestation;
    ProvenanceRefused when the previous epoch's leaves do not match the on-chain root."""
    start, end = grid.bounds(epoch)
    share_bps, max_tariff = pool_terms(conn, grid.pool)
    pool_id = text_id(grid.pool)
    previous = {}
    if epoch > 1:
        previous = previous_leaves(conn, grid.pool, epoch - 1, chain.root(pool_id, epoch - 1))
    chain.keys.refresh()
    raw = device_figures(
        conn,
        grid.pool,
        epoch,
        start,
        end,
        cutoff,
        prev_cutoff,
        settings.oracle_reading_interval_seconds,
        previous,
    )
    figures, leaves, exclusions = [], [], {}
    for f in raw:
        failed = exclusion(
            f, chain, grid.period_seconds, max_tariff, settings.oracle_device_power_margin
        )
        if failed is not None:
            exclusions[f.device_id] = failed
            f = excluded_figures(f)
        figures.append(f)
        leaves.append(
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
                end_energy_wh=f.end_energy_wh,
                end_revenue_minor=f.end_revenue_minor,
                end_sessions=f.end_sessions,
                excluded=EXCLUSIONS.index(failed[0]) if failed else 0,
            )
        )
    hashes = [leaf.leaf_hash() for leaf in leaves]
    root = MerkleTree(hashes).root if hashes else b"\x00" * 32
    revenue = sum(f.revenue_minor for f in figures)
    attestation = Attestation(
        pool_id=pool_id,
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
        exclusions=exclusions,
    )
