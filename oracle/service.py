"""`gridshare oracle run`: attest every pool's closed epochs, until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading

from prometheus_client import start_http_server

from gridshare.core import db
from gridshare.core.errors import ConfigError, GridshareError
from gridshare.oracle import funding
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.oracle.machine import Outcome, Status

log = logging.getLogger(__name__)
MAX_EPOCHS_PER_ROUND = 50  # per pool, so one pool catching up never starves the others


def pool_names(ctx: OracleContext) -> list[str]:
    """Real pools with a token on-chain (simulator-only, ephemeral pools are never attested)."""
    with db.connect(ctx.settings, autocommit=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT name FROM pools WHERE NOT ephemeral AND token_address IS NOT NULL"
                " ORDER BY name"
            )
        ]


def run_round(ctx: OracleContext, stop: threading.Event) -> list[Outcome]:
    """Attest every closed epoch of every pool (each pool until it has nothing to do); with
    auto-funding, pay each pool what has become final since."""
    outcomes: list[Outcome] = []
    for pool in pool_names(ctx):
        outcomes.extend(_attest_pool(ctx, pool, stop))
        if ctx.settings.oracle_auto_fund and not stop.is_set():
            try:
                funding.fund(ctx, pool)
            except GridshareError as exc:
                log.error("funding failed", extra={"fields": {"pool": pool, "error": str(exc)}})
            except Exception:  # a restarting node: the next round pays
                log.exception("funding failed", extra={"fields": {"pool": pool}})
    return outcomes


def _attest_pool(ctx: OracleContext, pool: str, stop: threading.Event) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for _ in range(MAX_EPOCHS_PER_ROUND):
        if stop.is_set():
            return outcomes
        try:
            outcome = attest_next(ctx, pool)
        except GridshareError as exc:
            log.error("pool step failed", extra={"fields": {"pool": pool, "error": str(exc)}})
            break
        except Exception:  # a restarting database or node: the next round resumes
            log.exception("pool step failed", extra={"fields": {"pool": pool}})
            break
        outcomes.append(outcome)
        if outcome.status not in (Status.WAITING, Status.NOTHING):
            fields = {"pool": pool, "status": outcome.status}
            log.info(outcome.message, extra={"fields": fields})
        if not outcome.progressed:
            break
    return outcomes


def run(ctx: OracleContext) -> None:
    """Loop until SIGTERM or SIGINT; a step in flight finishes first (and is crash-safe)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if ctx.settings.oracle_metrics_port:
        try:
            start_http_server(ctx.settings.oracle_metrics_port, addr=ctx.settings.api_host)
        except OSError as exc:
            raise ConfigError(
                "GRIDSHARE_ORACLE_METRICS_PORT",
                f"{ctx.settings.oracle_metrics_port}: {exc.strerror}",
            ) from exc
    log.info(
        "oracle running",
        extra={"fields": {"threshold": ctx.threshold, "signers": len(ctx.signers)}},
    )
    while not stop.is_set():
        try:
            run_round(ctx, stop)
        except Exception:  # listing the pools failed (database down): try again later
            log.exception("oracle round failed")
        stop.wait(ctx.settings.oracle_poll_seconds)
    log.info("oracle stopped")
