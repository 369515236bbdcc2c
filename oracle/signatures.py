"""Step two: the threshold of independently recomputing signers sign the epoch's digest.

Nothing is signed before the epoch has passed the anomaly guard."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import TypeVar

import psycopg

from gridshare.core.chain.attestation import ordered_signatures
from gridshare.oracle import metrics
from gridshare.oracle.compute import compute, save
from gridshare.oracle.context import OracleContext
from gridshare.oracle.signer import OracleSigner, Prepared, SignerAnswer
from gridshare.oracle.store import EpochRow, EpochState, record_answer
from gridshare.oracle.transitions import log_epoch, move, reached

MAX_FLUX_RETRIES = 5
FLUX_PAUSE_SECONDS = 1.0
Answer = TypeVar("Answer")


def compute_with_signers(
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
    the epoch itself and `collect_signatures` takes over."""
    prepared = _in_parallel(
        ctx,
        ctx.signers[: ctx.threshold],
        lambda s: s.prepare(pool, epoch, cutoff),
        lambda s: Prepared(s, None, None, "failed: timed out", None),
    )
    digests = {p.digest for p in prepared}
    common = prepared[0].computed if len(digests) == 1 and None not in digests else None
    computed = common or compute(ctx, conn, pool, epoch, cutoff)
    row = save(ctx, conn, computed, force)
    if common is None or row.state is not EpochState.COMPUTED:
        return row  # disagreement: ask again; withheld: nobody signs
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


def collect_signatures(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow) -> EpochRow:
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
        log_epoch(
            "signers disagree; recomputing",
            row.pool,
            row.epoch,
            level=logging.WARNING,
            agreeing=len(agreeing),
        )
        time.sleep(FLUX_PAUSE_SECONDS)
        again = save(
            ctx, conn, compute(ctx, conn, row.pool, row.epoch, row.data_cutoff), row.forced
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
    flagged = move(conn, row, EpochState.FLAGGED, flags=[flag])
    metrics.count(row.pool, EpochState.FLAGGED)
    log_epoch("epoch flagged: signers disagree", row.pool, row.epoch, level=logging.ERROR, **flag)
    return flagged


def _signed(
    ctx: OracleContext, conn: psycopg.Connection, row: EpochRow, agreeing: list[SignerAnswer]
) -> EpochRow:
    chosen = sorted(agreeing, key=lambda a: int(a.signer, 16))[: ctx.threshold]
    signatures = ordered_signatures((a.signer, a.signature or b"") for a in chosen)
    signed = move(
        conn,
        row,
        EpochState.SIGNED,
        signers=[a.signer for a in chosen],
        signatures=["0x" + s.hex() for s in signatures],
    )
    metrics.count(row.pool, EpochState.SIGNED)
    log_epoch("epoch signed", row.pool, row.epoch, signers=[a.signer for a in chosen])
    reached("signed")
    return signed


def _ask_signers(ctx: OracleContext, conn: psycopg.Connection, row: EpochRow) -> list[SignerAnswer]:
    agreeing: list[SignerAnswer] = []
    first, rest = ctx.signers[: ctx.threshold], ctx.signers[ctx.threshold :]
    for batch in (first, rest):
        if not batch or len(agreeing) >= ctx.threshold:
            continue
        answers = _in_parallel(
            ctx,
            batch,
            lambda s: s.sign_epoch(row.pool, row.epoch),
            lambda s: SignerAnswer(s.address, None, None, "failed: timed out"),
        )
        for answer in answers:
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
                log_epoch(
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


def _in_parallel(
    ctx: OracleContext,
    batch: list[OracleSigner],
    ask: Callable[[OracleSigner], Answer],
    timed_out: Callable[[OracleSigner], Answer],
) -> list[Answer]:
    """`ask` every signer of the batch in parallel, in batch order; one that does not answer
    in time gets `timed_out` (its thread is left to finish on its own)."""
    executor = ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="signer")
    futures = [(s, executor.submit(ask, s)) for s in batch]
    answers = []
    for signer, future in futures:
        try:
            answers.append(future.result(timeout=ctx.settings.oracle_signer_timeout_seconds))
        except FutureTimeout:
            answers.append(timed_out(signer))
    executor.shutdown(wait=False)
    return answers
