"""The ingest loop: batch, validate, commit, then acknowledge; retry the database forever.

Messages arrive from the receiving process (`receiver.py`); this process validates them
(schema, signature) and writes them, so the two halves run on two cores. Validation of the
next batch runs on a thread while the current batch is written: the signature check (C, no
interpreter lock) and PostgreSQL's work on the batch overlap the Python of the other half.

A batch is acknowledged only after its transaction committed, so a crash at any point means
the broker delivers the unacknowledged messages again and the (device_id, seq) key drops the
copies. While the database is unreachable the batch is retried with backoff and nothing is
acknowledged; the broker holds back further messages once `receive_maximum` are unacked.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg

from gridshare.core import db
from gridshare.core.errors import ServiceUnreachable
from gridshare.core.payloads import QuarantineReason
from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.ingest import cluster as cluster_consumer
from gridshare.ingest import metrics
from gridshare.ingest.decide import Capacity
from gridshare.ingest.devices import DeviceDirectory
from gridshare.ingest.keys import OnchainSigners
from gridshare.ingest.quarantine import QuarantinePolicy, prune
from gridshare.ingest.receiver import Receiver, ReceiverDied
from gridshare.ingest.revocation import DeviceChanges
from gridshare.ingest.validate import (
    Message,
    Reading,
    Rejection,
    TimeWindow,
    Verdict,
    classify,
    unknown_claim,
)
from gridshare.ingest.writer import BatchWriter, Outcome

TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, ServiceUnreachable)
MAX_BACKOFF = 10.0
DRAIN_SECONDS = 30.0  # a stopping worker commits what still arrives for this long at most
DRAIN_IDLE = 0.5  # ... until nothing arrived for this long
# The main thread waits on PostgreSQL a few times per batch; on each reply it must get the
# interpreter lock back from the validating thread, which CPython hands over only every
# switch interval (5 ms by default): up to ~25 ms per 500-message batch. 1 ms measured best.
SWITCH_INTERVAL = 0.001
PRUNE_SECONDS = 600.0  # quarantine retention applied this often (and at start)
log = logging.getLogger(__name__)


def _signed(verdict: Verdict) -> bool:
    """A reading, or a message refused for its signature."""
    return isinstance(verdict, Reading) or (
        isinstance(verdict, Rejection) and verdict.reason is QuarantineReason.BAD_SIGNATURE
    )


def default_client_id(settings: Settings) -> str:
    """A fixed id per host and worker name: the broker keeps the session under it."""
    return (
        settings.ingest_client_id
        or f"gridshare-ingest-{socket.gethostname()}-{settings.ingest_worker}"
    )


class Worker:
    """One ingest worker; `run` returns after SIGTERM/SIGINT once what arrived is committed.

    On stop the session is kept, so what is published meanwhile waits for the worker's
    return; with `retire` the worker leaves for good (see `broker.py`)."""

    def __init__(self, settings: Settings, retire: bool = False) -> None:
        settings = settings.for_service("ingest")  # every connection as the ingest role
        self.settings = settings
        self.retire = retire
        self.client_id = default_client_id(settings)
        self.directory = DeviceDirectory()
        self.changes = DeviceChanges(settings, self.directory)
        self.quarantine = QuarantinePolicy.from_settings(settings)
        self.signers: OnchainSigners | None = None  # the chain's keys, read in `run`
        self.window = TimeWindow(
            settings.ingest_max_clock_ahead_seconds, settings.ingest_max_backfill_seconds
        )
        receive_maximum = min(65535, max(1000, 8 * settings.ingest_batch_size))
        if cluster.enabled(settings):  # a competing consumer of the cluster's queue
            self.link = cluster_consumer.receiver(settings, self.client_id, receive_maximum)
        else:
            self.link = Receiver(settings, self.client_id, receive_maximum)
        self.stopping = False
        self._conn: psycopg.Connection | None = None
        self._writer: BatchWriter | None = None
        self._next_sweep = 0.0
        self._next_prune = 0.0
        self._gave_up = False  # a batch was left unacknowledged because we are stopping
        self._totals = dict.fromkeys(metrics.OUTCOMES, 0)
        self._validator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate")
        self._ahead: Future[list[Verdict]] | None = None  # the next batch, being validated

    def run(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL)
        db.require_current(self.settings)  # migrating is `gridshare migrate`'s job
        self.directory.ensure(self._database().conn, ())  # loads every registered device
        self.signers = OnchainSigners.for_settings(self.settings)
        metrics.serve(self.settings.ingest_metrics_port, self.settings.ingest_metrics_host)
        self.changes.start()
        self.link.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        if not self.settings.ingest_keep_evidence:
            log.warning("GRIDSHARE_INGEST_KEEP_EVIDENCE is off: stored readings are unverifiable")
        log.info("ingest worker running", extra={"fields": {"client_id": self.client_id}})
        ended = False
        try:
            while not self.stopping:
                self._step(idle=0.25)
            ended = self._retire() if self.retire else self._flush()
        finally:
            self._validator.shutdown(cancel_futures=True)
            self.changes.stop()
            self.link.stop(end_session=ended)
            if self._conn is not None:
                self._conn.close()
        log.info(
            "ingest worker stopped", extra={"fields": {**self._totals, "session_ended": ended}}
        )

    def _stop(self, signum: int, frame: object) -> None:
        log.info("stopping", extra={"fields": {"signal": signal.Signals(signum).name}})
        self.stopping = True

    def _step(self, idle: float) -> bool:
        """Commit the batch validated meanwhile (if any) while the next one is validated;
        then the periodic offline sweep. False once nothing arrived within `idle`."""
        ready = self._take_ahead()
        wait = (0.0, 0.0) if ready else (self.settings.ingest_batch_seconds, idle)
        batch = self.link.inbox.take(self.settings.ingest_batch_size, *wait)
        metrics.PENDING.set(len(self.link.inbox) + len(batch) + len(ready))
        if batch:
            self._ahead = self._validator.submit(self._classify, batch)
        if ready:
            self.commit(ready)
        elif not batch and not self.link.alive:
            raise ReceiverDied(
                "the MQTT receiving process ended; restart the worker (what was not"
                " committed is not acknowledged, so the broker delivers it again)"
            )
        self._sweep()
        return bool(ready or batch)

    def _take_ahead(self) -> list[Verdict]:
        ahead, self._ahead = self._ahead, None
        return ahead.result() if ahead is not None else []

    def _classify(self, batch: list[Message]) -> list[Verdict]:
        return [self._classify_one(message) for message in batch]

    def _classify_one(self, message: Message) -> Verdict:
        return classify(message, self.directory, self.window, self.signers)

    def _flush(self) -> bool:
        """After a stop request: commit and ack what had arrived by then (more keeps coming
        while subscribed; the session keeps that for our return)."""
        ready = self._take_ahead()
        if ready:
            self.commit(ready)
        arrived = len(self.link.inbox)
        while arrived > 0 and not self._gave_up:
            batch = self.link.inbox.take(min(arrived, self.settings.ingest_batch_size), 0, 0)
            if not batch:
                break
            arrived -= len(batch)
            self.commit(self._classify(batch))
        return False

    def _retire(self) -> bool:
        """After a stop request: unsubscribe, then commit and ack what still arrives. True if
        all of it was committed, so the session may end without stranding anything."""
        if not self.link.unsubscribe():
            return False
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._step(idle=DRAIN_IDLE):
            if self._gave_up or time.monotonic() > deadline:
                return False
        return not self._gave_up and not self.link.inbox

    def commit(self, batch: list[Verdict]) -> bool:
        """Write one batch and acknowledge it; False if given up because we are stopping."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                writer = self._database()
                outcome = writer.write(self._recheck(writer.conn, batch))
            except TRANSIENT as exc:
                self._lost_database(exc)
                attempt += 1
                metrics.DB_RETRIES.inc()
                if not self._backoff(attempt):
                    self._gave_up = True
                    return False
                continue
            except psycopg.Error as exc:
                return self._isolate(batch, exc)
            self.link.ack(v.message for v in batch)
            self._count(batch, outcome, time.perf_counter() - started)
            return True

    def _recheck(self, conn: psycopg.Connection, batch: list[Verdict]) -> list[Verdict]:
        """Look up devices the cache did not know and classify their messages again; the
        same for signed readings once new on-chain key events were read (a rotation: a
        reading refused under the old key may be good, one taken may not be)."""
        again = {i for i, v in enumerate(batch) if unknown_claim(v) is not None}
        self.directory.ensure(conn, [d for v in batch if (d := unknown_claim(v))])
        if self.signers is not None:
            refused = any(
                isinstance(v, Rejection) and v.reason is QuarantineReason.BAD_SIGNATURE
                for v in batch
            )
            if self.signers.refresh(force=refused):
                again |= {i for i, v in enumerate(batch) if _signed(v)}
        return [self._classify_one(v.message) if i in again else v for i, v in enumerate(batch)]

    def _isolate(self, batch: list[Verdict], exc: psycopg.Error) -> bool:
        """The database refused the batch's data (not a connection problem): write message
        by message, and quarantine a message the database refuses on its own."""
        log.warning("batch refused, writing one by one", extra={"fields": {"error": str(exc)}})
        if len(batch) > 1:
            return all([self.commit([m]) for m in batch])
        rejection = Rejection(
            batch[0].message, QuarantineReason.SCHEMA_ERROR, f"database refused it: {exc}"[:300]
        )
        while True:
            try:
                outcome = self._database().write([rejection])
            except (psycopg.Error, ServiceUnreachable) as again:
                self._lost_database(again)
                if not self._backoff(3):
                    self._gave_up = True
                    return False
                continue
            self.link.ack(v.message for v in batch)
            self._count(batch, outcome, 0.0)
            return True

    def _database(self) -> BatchWriter:
        if self._writer is None:
            self._conn = db.connect(self.settings, autocommit=True)
            self._writer = BatchWriter(
                self._conn, self._capacity, self.settings.ingest_keep_evidence, self.quarantine
            )
        return self._writer

    def _capacity(self, device_id: str) -> Capacity | None:
        device = self.directory.device(device_id)
        if device is None:
            return None
        return Capacity(
            device.rated_power_w,
            device.max_tariff_minor_per_kwh,
            self.settings.ingest_capacity_margin,
            self.settings.ingest_capacity_slack_seconds,
        )

    def _lost_database(self, exc: Exception) -> None:
        log.warning("database error; batch not acknowledged", extra={"fields": {"error": str(exc)}})
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn, self._writer = None, None

    def _backoff(self, attempt: int) -> bool:
        """Sleep before retry attempt `attempt`; False once a stop was requested."""
        deadline = time.monotonic() + min(MAX_BACKOFF, 0.25 * 2**attempt)
        while time.monotonic() < deadline:
            if self.stopping:
                return False
            time.sleep(0.05)
        return not self.stopping

    def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + max(1.0, min(30.0, self.settings.ingest_offline_seconds / 4))
        try:
            gone = self._database().sweep_offline(self.settings.ingest_offline_seconds)
        except (psycopg.Error, ServiceUnreachable) as exc:
            self._lost_database(exc)
            return
        if gone:
            log.info("devices offline", extra={"fields": {"devices": len(gone)}})
        self._prune(now)

    def _prune(self, now: float) -> None:
        """Apply the quarantine retention, every PRUNE_SECONDS (one worker at a time)."""
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_SECONDS
        try:
            deleted = prune(self._database().conn, self.settings.quarantine_retention_days)
        except (psycopg.Error, ServiceUnreachable) as exc:
            self._lost_database(exc)
            return
        if deleted:
            metrics.QUARANTINE_PRUNED.inc(deleted)
            log.info("quarantine pruned", extra={"fields": {"rows": deleted}})

    def _count(self, batch: list[Verdict], outcome: Outcome, seconds: float) -> None:
        stored = len(outcome.stored) + len(outcome.statuses)
        for name, count in (
            ("stored", stored),
            ("duplicate", len(outcome.duplicates)),
            ("quarantined", len(outcome.quarantined)),
        ):
            metrics.MESSAGES.labels(name).inc(count)
            self._totals[name] += count
        for rejection in outcome.quarantined:
            metrics.QUARANTINED.labels(rejection.reason.value).inc()
        for rejection in outcome.unstored:
            metrics.QUARANTINE_UNSTORED.labels(rejection.reason.value).inc()
        metrics.UNBOUNDED_PROBES.inc(outcome.unbounded)
        metrics.BATCH_SECONDS.observe(seconds)
        metrics.BATCH_SIZE.set(len(batch))
        metrics.LAG_SECONDS.set(time.monotonic() - min(v.message.received_mono for v in batch))
