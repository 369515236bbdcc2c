"""One step of a pool's attestation: the next closed epoch taken as far as it can go.

computed -> (guard) -> signed by the threshold of independently recomputing signers ->
submitted (transaction committed to the database, then broadcast) -> confirmed. Each call
first resumes whatever epoch a previous (possibly killed) run left in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime

import psycopg

from gridshare.core import db
from gridshare.core.chain.attestation import Attestation, ordered_signatures
from gridshare.core.errors import ContractRevert, GridshareError
from gridshare.oracle import challenges, guard, metrics, submitter
from gridshare.oracle.context import OracleContext
from gridshare.oracle.figures import ComputedEpoch, compute_epoch
from gridshare.oracle.leaves import text_id
from gridshare.oracle.periods import ensure_grid, to_unix, watermark
from gridshare.oracle.provenance import ProvenanceRefused
from gridshare.oracle.signer import OracleSigner, Prepared, SignerAnswer
from gridshare.oracle.store import (
    EpochRow,
    EpochState,
    data_cutoff_of,
    latest_epoch,
    load_epoch,
    record_answer,
    save_computed,
    transition,
)

log = logging.getLogger(__name__)
MAX_FLUX_RETRIES = 5
FLUX_PAUSE_SECONDS = 1.0
_step_hooks: list[Callable[[str], None]] = []


class OracleError(GridshareError):
    """The oracle cannot go on with a pool (the message says why and what to do)."""


@dataclass(frozen=True)
class Outcome:
    """What one step did: `status` is confirmed, waiting, nothing, withheld, flagged,
    pending or busy."""

    pool: str
    epoch: int | None
    status: str
    message: str

    @property
    def progressed(self) -> bool:
        return self.status == "confirmed"


def attest_next(ctx: OracleContext, pool: str, force: bool = False) -> Outcome:
    """Take the pool's next epoch as far as possible (one epoch at most)."""
    with db.connect(ctx.settings, autocommit=True) as conn:
        locked = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext('gridshare-oracle:' || %s))", (pool,)
        ).fetchone()
        if not (locked and locked[0]):
            return Outcome(pool, None, "busy", f"{pool}: another oracle process is attesting it")
        try:
            ctx.refresh()
            ctx.sync_pool_terms(conn, pool)
            challenges.reopen_vetoed(ctx, conn, pool)
            return _step(ctx, conn, pool, force)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('gridshare-oracle:' || %s))", (pool,))


def _step(ctx: OracleContext, conn: psycopg.Connection, pool: str, force: bool) -> Outcome:
    known = conn.execute("SELECT ephemeral FROM pools WHERE name = %s", (pool,)).fetchone()
    if known is None:
        raise OracleError(f"pool {pool} is unknown; provision it first")
    if known[0]:
        raise OracleError(f"pool {pool} holds ephemeral simulator devices; it is never attested")
    row = latest_epoch(conn, pool)
    if row is not None and row.state is not EpochState.CONFIRMED:
        return _advance(ctx, conn, row, force)
    epoch = row.epoch + 1 if row else 1
    grid = ensure_grid(conn, pool, ctx.settings.period_seconds)
    if grid is None:
        return Outcome(pool, None, "nothing", f"{pool}: no readings yet, nothing to attest")
    if grid.period_seconds != ctx.settings.period_seconds:
        log.warning(
            "pool keeps the period length it started with",
            extra={"fields": {"pool": pool, "period_seconds": grid.period_seconds}},
        )
    start, end = grid.bounds(epoch)
    cutoff = _cutoff(ctx, conn)
    mark = watermark(conn, pool, ctx.settings.oracle_silent_allowance_seconds, cutoff)
    if mark.at is None or mark.at < end:
        return Outcome(
            pool,
            epoch,
            "waiting",
            f"{pool}: epoch {epoch} [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC is not "
            f"closed yet (watermark {mark.at:%Y-%m-%d %H:%M:%S} UTC); nothing to do"
            if mark.at
            else f"{pool}: epoch {epoch} is not closed yet; nothing to do",
        )
    return _advance(ctx, conn, _compute_with_signers(ctx, conn, pool, epoch, cutoff, force), force)


def _compute_with_signers(
    ctx: OracleContext,
    conn: psycopg.Connection,
    pool: str,
    epoch: int,
    cutoff: datetime,
    force: bool,
) -> EpochRow:
    """The first `threshold` signers compute the epoch in parallel, each on its own
    connection with the same cutoff. If they all agree, their common result is stored as the
    epoch (the aggregator is no signer: a computation of its own would add nothing to what
    `threshold` independent ones establish) and, once it has passed the guard, each signs
    what it computed itself. Nothing is signed before that. Otherwise the aggregator computes
    the epoch itself and `_collect_signatures` takes over."""
    prepared = _prepare(ctx, ctx.signers[: ctx.threshold], pool, epoch, cutoff)
    digests = {p.digest for p in prepared}
    common = prepared[0].computed if len(digests) == 1 and None not in digests else None
    computed = common or _compute(ctx, conn, pool, epoch, cutoff)
    row = _save(ctx, conn, computed, force)
    if common is None or row.state is not EpochState.COMPUTED:
        return row  # disagreement: ask again below; withheld: nobody signs
    answers = [p.sign() for p in prepared]
    for answer in answers:
        record_answer(
            conn,
            pool,
            epoch,
            answer.signer,
            row.digest,
            "0x" + answer.signature.hex() if answer.signature else None,
            True,
            answer.detail,
        )
    return _signed(ctx, conn, row, answers)


def _prepare(
    ctx: OracleContext, batch: list[OracleSigner], pool: str, epoch: int, cutoff: datetime
) -> list[Prepared]:
    executor = ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="signer")
    futures = [(s, executor.submit(s.prepare, pool, epoch, cutoff)) for s in batch]
    prepared = []
    for signer, future in futures:
        try:
            prepared.append(future.result(timeout=ctx.settings.oracle_signer_timeout_seconds))
        except FutureTimeout:
            prepared.append(Prepared(signer, None, None, "failed: timed out", None))
    executor.shutdown(wait=False)
    return prepared


def _cutoff(ctx: OracleContext, conn: psycopg.Connection) -> datetime:
    """Readings received after this moment (database clock) wait for the next epoch."""
    row = conn.execute(
        "SELECT now() - make_interval(secs => %s)", (ctx.settings.oracle_cutoff_margin_seconds,)
    ).fetchone()
    assert row is not None
    return row[0]


def _compute(
    ctx: OracleContext,
    conn: psycopg.Connection,
    pool: str,
    epoch: int,
    cutoff: datetime | None = None,
) -> ComputedEpoch:
    grid = ensure_grid(conn, pool, ctx.settings.period_seconds)
    assert grid is not None
    cutoff = cutoff or _cutoff(ctx, conn)
    prev_cutoff = data_cutoff_of(conn, pool, epoch - 1) if epoch > 1 else None
    try:
        return compute_epoch(conn, grid, epoch, cutoff, prev_cutoff, ctx.settings, ctx.chain)
    except ProvenanceRefused as exc:
        raise OracleError(f"{pool}: epoch {epoch} cannot be computed: {exc}") from exc


def _save(
    ctx: OracleContext, conn: psycopg.Connection, computed: ComputedEpoch, force: bool
) -> EpochRow:
    flags = guard.check(conn, computed, ctx.settings)
    state = EpochState.WITHHELD if flags and not force else EpochState.COMPUTED
    digest = computed.attestation.digest(ctx.signing_context(computed.pool))
    notes = [dict(f, forced=force) for f in flags]
    save_computed(conn, computed, digest, state, notes, forced=force and bool(flags))
    a = computed.attestation
    _log(
        "epoch computed" if state is EpochState.COMPUTED else "epoch withheld by anomaly guard",
        computed.pool,
        computed.epoch,
        level=logging.INFO if state is EpochState.COMPUTED else logging.WARNING,
        energy_wh=a.energy_wh,
        revenue_minor=a.revenue_minor,
        investor_amount=a.investor_amount,
        devices=a.device_count,
        silent=computed.silent_devices,
        adjustment_energy_wh=computed.adjustment_energy_wh,
        root="0x" + a.leaves_root.hex(),
        flags=flags,
    )
    metrics.count(computed.pool, state)
    _reached("computed")
    row = load_epoch(conn, computed.pool, computed.epoch)
    assert row is not None
    return row


def _advance(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow, force: bool) -> Outcome:
    """Resume an epoch from its persisted state."""
    if row.state in (EpochState.WITHHELD, EpochState.FLAGGED):
        if not force:
            reasons = "; ".join(str(f.get("detail", f)) for f in row.flags[-3:])
            return Outcome(
                row.pool,
                row.epoch,
                row.state.value,
                f"{row.pool}: epoch {row.epoch} is {row.state.value} ({reasons}); review it, "
                f"then run `gridshare oracle attest --pool {row.pool} --force`",
            )
        row = _save(ctx, conn, _compute(ctx, conn, row.pool, row.epoch), force=True)
    row = _resign_if_stale(ctx, conn, row, (EpochState.COMPUTED, EpochState.SIGNED))
    if row.state is EpochState.COMPUTED:
        row = _collect_signatures(ctx, conn, row)
        if row.state is EpochState.FLAGGED:
            return Outcome(
                row.pool,
                row.epoch,
                "flagged",
                f"{row.pool}: epoch {row.epoch} flagged: signers disagree, not submitted",
            )
    if row.state is EpochState.SIGNED:
        row = _submit(ctx, conn, row)
    if row.state is EpochState.SUBMITTED:
        row = _confirm(ctx, conn, row)
    if row.state is EpochState.CONFIRMED:
        return Outcome(
            row.pool,
            row.epoch,
            "confirmed",
            f"{row.pool}: epoch {row.epoch} attested in block {row.block_number} "
            f"(tx {row.tx_hash}): revenue {row.revenue_minor} cents, investors "
            f"{row.investor_amount} units, {row.device_count} devices",
        )
    if row.state is EpochState.FLAGGED:
        return Outcome(row.pool, row.epoch, "flagged", f"{row.pool}: epoch {row.epoch} flagged")
    return Outcome(
        row.pool, row.epoch, "pending", f"{row.pool}: epoch {row.epoch} is {row.state.value}"
    )


# ----- signing -----


def _collect_signatures(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow) -> EpochRow:
    """Ask signers (first the threshold, then the rest) until `threshold` agree with the
    aggregator's digest. On disagreement, recompute with the same data cutoff: readings
    received before the cutoff may still have been committing (data in flux). A digest that
    changes on recomputation is flux and is retried (up to MAX_FLUX_RETRIES); a stable one
    that signers still dispute counts as an attempt, and `sign_attempts` of those flag it."""
    attempts = flux = 0
    while True:
        agreeing = _ask_signers(ctx, conn, row)
        if len(agreeing) >= ctx.threshold:
            return _signed(ctx, conn, row, agreeing)
        attempts += 1
        if attempts >= ctx.settings.oracle_sign_attempts:
            break
        _log(
            "signers disagree; recomputing",
            row.pool,
            row.epoch,
            level=logging.WARNING,
            agreeing=len(agreeing),
        )
        time.sleep(FLUX_PAUSE_SECONDS)
        again = _save(
            ctx, conn, _compute(ctx, conn, row.pool, row.epoch, row.data_cutoff), row.forced
        )
        if again.state is not EpochState.COMPUTED:
            return again
        if again.digest != row.digest and flux < MAX_FLUX_RETRIES:
            flux += 1
            attempts -= 1
        row = again
    flag = {
        "check": "signers_disagree",
        "detail": f"{len(agreeing)} of {len(ctx.signers)} signers agree, threshold {ctx.threshold}",
    }
    transition(conn, row.pool, row.epoch, (EpochState.COMPUTED,), EpochState.FLAGGED, flags=[flag])
    metrics.count(row.pool, EpochState.FLAGGED)
    _log("epoch flagged: signers disagree", row.pool, row.epoch, level=logging.ERROR, **flag)
    flagged = load_epoch(conn, row.pool, row.epoch)
    assert flagged is not None
    return flagged


def _signed(
    ctx: OracleContext, conn: psycopg.Connection, row: EpochRow, agreeing: list[SignerAnswer]
) -> EpochRow:
    chosen = sorted(agreeing, key=lambda a: int(a.signer, 16))[: ctx.threshold]
    signatures = ordered_signatures((a.signer, a.signature or b"") for a in chosen)
    transition(
        conn,
        row.pool,
        row.epoch,
        (EpochState.COMPUTED,),
        EpochState.SIGNED,
        signers=[a.signer for a in chosen],
        signatures=["0x" + s.hex() for s in signatures],
    )
    metrics.count(row.pool, EpochState.SIGNED)
    _log("epoch signed", row.pool, row.epoch, signers=[a.signer for a in chosen])
    _reached("signed")
    signed = load_epoch(conn, row.pool, row.epoch)
    assert signed is not None
    return signed


def _ask_signers(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow) -> list[SignerAnswer]:
    agreeing: list[SignerAnswer] = []
    first, rest = ctx.signers[: ctx.threshold], ctx.signers[ctx.threshold :]
    for batch in (first, rest):
        if not batch or len(agreeing) >= ctx.threshold:
            continue
        for answer in _answers(ctx, row, batch):
            digest = "0x" + answer.digest.hex() if answer.digest else None
            agrees = answer.signed and digest == row.digest
            record_answer(
                conn,
                row.pool,
                row.epoch,
                answer.signer,
                digest,
                "0x" + answer.signature.hex() if answer.signature else None,
                agrees,
                answer.detail if agrees or not answer.signed else "digest differs",
            )
            if agrees:
                agreeing.append(answer)
            else:
                _log(
                    "signer disagrees",
                    row.pool,
                    row.epoch,
                    level=logging.WARNING,
                    signer=answer.signer,
                    detail=answer.detail,
                    their_digest=digest,
                    our_digest=row.digest,
                )
    return agreeing


def _answers(ctx: OracleContext, row: EpochRow, batch: list[OracleSigner]) -> list[SignerAnswer]:
    """Every signer of the batch in parallel; one that does not answer in time is recorded
    as failed (its thread is left to finish on its own)."""
    executor = ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="signer")
    futures = [(s, executor.submit(s.sign_epoch, row.pool, row.epoch)) for s in batch]
    answers = []
    for signer, future in futures:
        try:
            answers.append(future.result(timeout=ctx.settings.oracle_signer_timeout_seconds))
        except FutureTimeout:
            answers.append(SignerAnswer(signer.address, None, None, "failed: timed out"))
    executor.shutdown(wait=False)
    return answers


# ----- submission -----


def attestation_of(row: EpochRow) -> Attestation:
    return Attestation(
        pool_id=text_id(row.pool),
        epoch=row.epoch,
        period_start=to_unix(row.period_start),
        period_end=to_unix(row.period_end),
        energy_wh=row.energy_wh,
        revenue_minor=row.revenue_minor,
        investor_amount=row.investor_amount,
        device_count=row.device_count,
        leaves_root=bytes.fromhex(row.leaves_root.removeprefix("0x")),
    )


def _submit(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow) -> EpochRow:
    """Check the chain, sign the transaction, persist it, then broadcast it."""
    if (reconciled := _reconcile_onchain(ctx, conn, row)) is not None:
        return reconciled
    signatures = [bytes.fromhex(s.removeprefix("0x")) for s in row.signatures or []]
    try:
        tx = submitter.build_submit(
            ctx.client, ctx.registry, attestation_of(row), signatures, ctx.submitter
        )
    except ContractRevert as exc:
        return _flag(conn, row, "chain_refused", str(exc))
    transition(
        conn,
        row.pool,
        row.epoch,
        (EpochState.SIGNED,),
        EpochState.SUBMITTED,
        tx_hash=tx.tx_hash,
        tx_nonce=tx.nonce,
        tx_raw=tx.raw,
        submitter=ctx.submitter.address,
    )
    submitter.broadcast(ctx.client, tx)
    metrics.count(row.pool, EpochState.SUBMITTED)
    _log("attestation broadcast", row.pool, row.epoch, tx_hash=tx.tx_hash, nonce=tx.nonce)
    _reached("broadcast")
    submitted = load_epoch(conn, row.pool, row.epoch)
    assert submitted is not None
    return submitted


def _confirm(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow) -> EpochRow:
    """Find the persisted transaction again and wait for it; re-broadcast the same bytes if
    the node lost it; build a new one only if its nonce went to another transaction."""
    assert row.tx_hash and row.tx_raw is not None and row.tx_nonce is not None
    if submitter.receipt(ctx.client, row.tx_hash) is None:
        if (reconciled := _reconcile_onchain(ctx, conn, row)) is not None:
            return reconciled
        if submitter.find(ctx.client, row.tx_hash) is None:
            if submitter.nonce_used(ctx.client, row.submitter or "", row.tx_nonce):
                _log("attestation tx replaced; signing a new one", row.pool, row.epoch)
                transition(conn, row.pool, row.epoch, (EpochState.SUBMITTED,), EpochState.SIGNED)
                fresh = load_epoch(conn, row.pool, row.epoch)
                assert fresh is not None
                return _confirm(ctx, conn, _submit(ctx, conn, fresh))
            _log("re-broadcasting the recorded attestation tx", row.pool, row.epoch)
            submitter.broadcast(
                ctx.client, submitter.SignedTx(row.tx_hash, row.tx_nonce, row.tx_raw)
            )
    mined = submitter.wait_mined(
        ctx.client, row.tx_hash, ctx.settings.oracle_receipt_timeout_seconds
    )
    if mined is None:
        _log("attestation tx still pending", row.pool, row.epoch, tx_hash=row.tx_hash)
        return row
    if not mined.ok:
        if (reconciled := _reconcile_onchain(ctx, conn, row)) is not None:
            return reconciled
        ctx.refresh()
        if (fresh := _resign_if_stale(ctx, conn, row, (EpochState.SUBMITTED,))) is not row:
            return fresh
        return _flag(conn, row, "chain_refused", mined.revert)
    return _confirmed(conn, row, mined.tx_hash, mined.block_number, mined.gas_used)


def _resign_if_stale(
    ctx: OracleContext, conn: psycopg.Connection, row: EpochRow, states: tuple[EpochState, ...]
) -> EpochRow:
    """An epoch whose digest no longer matches the registry (oracle set changed) goes back
    to computed under the current digest, to be signed again; others are returned as is."""
    if row.state not in states:
        return row
    digest = "0x" + attestation_of(row).digest(ctx.signing_context(row.pool)).hex()
    if digest == row.digest:
        return row
    _log("oracle set changed; signing again", row.pool, row.epoch, old=row.digest, new=digest)
    transition(
        conn,
        row.pool,
        row.epoch,
        states,
        EpochState.COMPUTED,
        digest=digest,
        signers=None,
        signatures=None,
    )
    fresh = load_epoch(conn, row.pool, row.epoch)
    assert fresh is not None
    return fresh


def _reconcile_onchain(
    ctx: OracleContext, conn: psycopg.Connection, row: EpochRow
) -> EpochRow | None:
    """If the chain already holds this epoch, record it (ours) or flag it (someone else's)."""
    pool_id = text_id(row.pool)
    onchain = int(ctx.client.call(ctx.registry.functions.latestEpoch(pool_id)))
    if onchain < row.epoch - 1:
        raise OracleError(
            f"{row.pool}: the chain has epochs up to {onchain} but the database is at "
            f"{row.epoch - 1}; was the chain reset? (redeploy, or clear the oracle tables)"
        )
    if onchain < row.epoch:
        return None
    stored = ctx.client.call(ctx.registry.functions.attestation(pool_id, row.epoch))
    root = "0x" + bytes(stored[8]).hex()
    event = submitter.accepted_log(ctx.client, ctx.registry, pool_id, row.epoch, ctx.record.block)
    tx_hash = "0x" + bytes(event["transactionHash"]).hex() if event else row.tx_hash
    block = int(event["blockNumber"]) if event else None
    if root != row.leaves_root:
        return _flag(conn, row, "chain_conflict", f"epoch on-chain has root {root}")
    gas = None
    if tx_hash and (rcpt := submitter.receipt(ctx.client, tx_hash)) is not None:
        gas = int(rcpt["gasUsed"])
    return _confirmed(conn, row, tx_hash, block, gas)


def _confirmed(
    conn: psycopg.Connection,
    row: EpochRow,
    tx_hash: str | None,
    block: int | None,
    gas: int | None,
) -> EpochRow:
    transition(
        conn,
        row.pool,
        row.epoch,
        (EpochState.SIGNED, EpochState.SUBMITTED),
        EpochState.CONFIRMED,
        tx_hash=tx_hash,
        block_number=block,
        gas_used=gas,
    )
    metrics.count(row.pool, EpochState.CONFIRMED)
    _log("epoch confirmed", row.pool, row.epoch, tx_hash=tx_hash, block=block, gas_used=gas)
    confirmed = load_epoch(conn, row.pool, row.epoch)
    assert confirmed is not None
    return confirmed


def _flag(conn: psycopg.Connection, row: EpochRow, check_name: str, detail: str) -> EpochRow:
    transition(
        conn,
        row.pool,
        row.epoch,
        (EpochState.SIGNED, EpochState.SUBMITTED),
        EpochState.FLAGGED,
        flags=[{"check": check_name, "detail": detail}],
    )
    metrics.count(row.pool, EpochState.FLAGGED)
    _log("epoch flagged", row.pool, row.epoch, level=logging.ERROR, reason=detail)
    flagged = load_epoch(conn, row.pool, row.epoch)
    assert flagged is not None
    return flagged


def after_step(hook: Callable[[str], None]) -> None:
    """Call `hook(step)` right after each step ("computed", "signed", "broadcast") is
    committed: tests install one that kills the process there, to prove the restart."""
    _step_hooks.append(hook)


def _reached(step: str) -> None:
    for hook in _step_hooks:
        hook(step)


def _log(msg: str, pool: str, epoch: int, level: int = logging.INFO, **fields: object) -> None:
    log.log(level, msg, extra={"fields": {"pool": pool, "epoch": epoch, **fields}})
