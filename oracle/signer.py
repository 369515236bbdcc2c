"""An oracle signer: recomputes an epoch on its own database connection and signs what it
computed (EIP-712), never figures handed to it.

The aggregator only tells a signer which pool and epoch to look at; the signer reads the
period grid, the epoch's data cutoff and the telemetry itself, checks the period is closed,
computes the leaves, root and figures, and signs the digest of its own result. A signer may
read through its own database URL (`GRIDSHARE_ORACLE_SIGNER_DB_URLS`), e.g. a replica.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from gridshare.core.chain.accounts import ChainAccount
from gridshare.core.chain.attestation import sign_attestation
from gridshare.oracle.figures import compute_epoch
from gridshare.oracle.periods import load_grid, watermark
from gridshare.oracle.settings import OracleSettings
from gridshare.oracle.store import data_cutoff_of


@dataclass(frozen=True)
class SignerAnswer:
    """What one signer computed and signed (or why it did not sign)."""

    signer: str
    digest: bytes | None
    signature: bytes | None
    detail: str

    @property
    def signed(self) -> bool:
        return self.signature is not None


@dataclass(frozen=True)
class OracleSigner:
    """One oracle key and the database it reads."""

    account: ChainAccount
    db_url: str
    chain_id: int
    registry: str
    settings: OracleSettings

    @property
    def address(self) -> str:
        return self.account.address

    def sign_epoch(self, pool: str, epoch: int) -> SignerAnswer:
        """Recompute `epoch` of `pool` and sign it, or say why not."""
        try:
            with psycopg.connect(self.db_url, autocommit=True, connect_timeout=5) as conn:
                return self._sign(conn, pool, epoch)
        except (psycopg.Error, LookupError, ValueError) as exc:
            return SignerAnswer(self.address, None, None, f"failed: {exc}".splitlines()[0])

    def _sign(self, conn: psycopg.Connection, pool: str, epoch: int) -> SignerAnswer:
        grid = load_grid(conn, pool)
        cutoff = data_cutoff_of(conn, pool, epoch)
        if grid is None or cutoff is None:
            return SignerAnswer(self.address, None, None, "refused: epoch not found")
        _, end = grid.bounds(epoch)
        mark = watermark(conn, pool, self.settings.silent_allowance_seconds, cutoff)
        if mark.at is None or mark.at < end:
            return SignerAnswer(self.address, None, None, "refused: period not closed")
        prev_cutoff = data_cutoff_of(conn, pool, epoch - 1) if epoch > 1 else None
        computed = compute_epoch(conn, grid, epoch, cutoff, prev_cutoff, self.settings)
        digest = computed.attestation.digest(self.chain_id, self.registry)
        _, signature = sign_attestation(
            computed.attestation, self.account, self.chain_id, self.registry
        )
        return SignerAnswer(self.address, digest, signature, "signed")
