"""The worker's Prometheus metrics (SPEC §10 names), served on GRIDSHARE_INGEST_METRICS_PORT."""

from __future__ import annotations

import contextlib
import time

import httpx
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from gridshare.core.errors import ConfigError
from gridshare.core.payloads import QuarantineReason

OUTCOMES = ("stored", "duplicate", "quarantined")

MESSAGES = Counter(
    "gridshare_ingest_messages", "Telemetry and status messages by outcome", ["outcome"]
)
QUARANTINED = Counter(
    "gridshare_ingest_quarantined", "Messages stored in quarantine by reason", ["reason"]
)
BATCH_SECONDS = Histogram(
    "gridshare_ingest_batch_seconds",
    "Time to validate, write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Gauge("gridshare_ingest_batch_size", "Messages in the last committed batch")
LAG_SECONDS = Gauge(
    "gridshare_ingest_lag_seconds",
    "From receipt of the oldest message of the last batch to its commit",
)
PENDING = Gauge(
    "gridshare_ingest_pending_messages", "Messages received but not yet committed and acked"
)
SUBSCRIBED = Gauge(
    "gridshare_ingest_subscribed",
    "1 once the broker confirmed the telemetry subscription (readiness), else 0",
)
QUARANTINE_UNSTORED = Counter(
    "gridshare_ingest_quarantine_unstored",
    "Quarantined messages not stored (over the device's quarantine rate), by reason",
    ["reason"],
)
QUARANTINE_PRUNED = Counter(
    "gridshare_ingest_quarantine_pruned", "Quarantine rows deleted after the retention"
)
UNBOUNDED_PROBES = Counter(
    "gridshare_ingest_unbounded_probes",
    "Readings at or below their device's last seq with no stored twin at their own device"
    " time, looked up in every chunk (out of order, conflicting with another time, restored)",
)
DB_RETRIES = Counter("gridshare_ingest_db_retries", "Batches retried after a database error")

for _outcome in OUTCOMES:
    MESSAGES.labels(_outcome)
for _reason in QuarantineReason:
    QUARANTINED.labels(_reason.value)
    QUARANTINE_UNSTORED.labels(_reason.value)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on `host`:`port` (port 0 disables it); loopback unless configured."""
    if port == 0:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise ConfigError("GRIDSHARE_INGEST_METRICS_PORT", f"{port}: {exc.strerror}") from exc


def wait_ready(port: int, timeout: float = 30.0) -> bool:
    """Poll a worker's metrics until it reports its subscription; False on timeout.

    Until then the broker drops telemetry nobody subscribed to, so whoever starts the first
    worker and the devices together (the demo, tests) starts the devices after this."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            if "\ngridshare_ingest_subscribed 1.0" in text:
                return True
        time.sleep(0.2)
    return False
