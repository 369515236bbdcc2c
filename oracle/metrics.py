"""The oracle's Prometheus metrics (SPEC §10)."""

from __future__ import annotations

from prometheus_client import Counter

EPOCHS = Counter(
    "gridshare_oracle_epochs",
    "Epochs that reached each attestation state, per pool.",
    ["pool", "state"],
)


def count(pool: str, state: str) -> None:
    EPOCHS.labels(pool=pool, state=str(state)).inc()
