"""An oracle signer: recomputes an epoch on its own database connection and signs what it
computed (EIP-712), never figures handed to it.

The aggregator only tells a signer which pool and epoch to look at; the signer reads the
period grid, the epoch's data cutoff and the telemetry itself, checks the period is closed,
computes the leaves, root and figures, and signs the digest of its own result. Before that it
checks what it reads against the chain (provenance.py): the previous epoch's leaves against
the on-chain root, each determining reading against the device's on-chain key. It refuses,
saying why, when the previous leaves do not check out; devices whose readings fail are
excluded from its result. A signer may read through its own database URL
(`GRIDSHARE_ORACLE_SIGNER_DB_URLS`), e.g. a replica or the read-only `gridshare_reader` role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from gridshare.core.chain.accounts import ChainAccount
from gridshare.core.chain.attestation import SigningContext, sign_attestation
from gridshare.core.settings import Settings
from gridshare.oracle.figures import ComputedEpoch, compute_epoch
from gridshare.oracle.periods import load_grid, watermark
from gridshare.oracle.provenance import ChainView, ProvenanceRefused
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
    """One oracle key and the database it reads; `signing` gives, per pool, what the
    registry binds signatures to now (oracle-set version, veto count)."""

    account: ChainAccount
    db_url: str
    signing: Callable[[str], SigningContext]
    settings: Settings
    chain: ChainView  # this signer's own reading of the chain

    @property
    def address(self) -> str:
        return self.account.address

    def sign_epoch(self, pool: str, epoch: int) -> SignerAnswer:
        """Recompute `epoch` of `pool` (with the data cutoff recorded for it) and sign it."""
        return self.prepare(pool, epoch).sign()

    def prepare(self, pool: str, epoch: int, cutoff: datetime | None = None) -> Prepared:
        """Recompute `epoch` of `pool` without signing yet: the aggregator first checks that
        enough signers agree and that the anomaly guard lets the epoch through, then asks
        each to `sign()` what it computed itself. `cutoff` is which readings count (received
        by then); by default the one recorded for the epoch."""
        try:
            with psycopg.connect(self.db_url, autocommit=True, connect_timeout=5) as conn:
                return self._prepare(conn, pool, epoch, cutoff)
        except ProvenanceRefused as exc:
            return Prepared(self, None, None, f"refused: {exc}", None)
        except (psycopg.Error, LookupError, ValueError) as exc:
            return Prepared(self, None, None, f"failed: {exc}".splitlines()[0], None)

    def _prepare(
        self, conn: psycopg.Connection, pool: str, epoch: int, cutoff: datetime | None
    ) -> Prepared:
        grid = load_grid(conn, pool)
        cutoff = cutoff or data_cutoff_of(conn, pool, epoch)
        if grid is None or cutoff is None:
            return Prepared(self, None, None, "refused: epoch not found", None)
        _, end = grid.bounds(epoch)
        mark = watermark(conn, pool, self.settings.oracle_silent_allowance_seconds, cutoff)
        if mark.at is None or mark.at < end:
            return Prepared(self, None, None, "refused: period not closed", None)
        prev_cutoff = data_cutoff_of(conn, pool, epoch - 1) if epoch > 1 else None
        computed = compute_epoch(conn, grid, epoch, cutoff, prev_cutoff, self.settings, self.chain)
        signing = self.signing(pool)
        digest = computed.attestation.digest(signing)
        return Prepared(self, computed, digest, "computed", signing)


@dataclass(frozen=True)
class Prepared:
    """A signer's own computation of an epoch, not signed yet."""

    signer: OracleSigner
    computed: ComputedEpoch | None
    digest: bytes | None
    detail: str
    signing: SigningContext | None

    def sign(self) -> SignerAnswer:
        """Sign what this signer computed (nothing else can be signed through it)."""
        if self.computed is None or self.signing is None:
            return SignerAnswer(self.signer.address, self.digest, None, self.detail)
        _, signature = sign_attestation(
            self.computed.attestation, self.signer.account, self.signing
        )
        return SignerAnswer(self.signer.address, self.digest, signature, "signed")
