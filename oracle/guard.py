"""The anomaly guard: an epoch that looks wrong is withheld for review, never signed.

Checks (bounds in `Settings.oracle_guard_*`):
* revenue deviating from the pool's trailing average (last `guard_trailing_epochs` confirmed
  epochs, once `guard_min_history` exist) by more than `guard_max_ratio` either way;
* revenue above what the metered energy can justify at `guard_max_tariff_minor_per_kwh`
  (swap cabinets are paid per swap, so this bound is generous);
* more than `guard_max_silent_fraction` of the pool's devices without a reading in the period.
"""

from __future__ import annotations

from typing import Any

import psycopg

from gridshare.core.settings import Settings
from gridshare.oracle.figures import ComputedEpoch


def check(
    conn: psycopg.Connection, computed: ComputedEpoch, settings: Settings
) -> list[dict[str, Any]]:
    """The anomalies found (empty: the epoch may be signed)."""
    flags: list[dict[str, Any]] = []
    revenue = computed.attestation.revenue_minor
    energy = computed.attestation.energy_wh
    history = [
        int(r[0])
        for r in conn.execute(
            """SELECT revenue_minor FROM oracle_epochs
               WHERE pool = %s AND epoch < %s AND state = 'confirmed'
               ORDER BY epoch DESC LIMIT %s""",
            (computed.pool, computed.epoch, settings.oracle_guard_trailing_epochs),
        )
    ]
    if len(history) >= settings.oracle_guard_min_history:
        average = sum(history) / len(history)
        ratio = settings.oracle_guard_max_ratio
        if average > 0 and not average / ratio <= revenue <= average * ratio:
            flags.append(
                {
                    "check": "revenue_deviation",
                    "detail": f"revenue {revenue} vs trailing average {average:.0f} "
                    f"over {len(history)} epochs (allowed x{ratio} either way)",
                }
            )
    ceiling = energy * settings.oracle_guard_max_tariff_minor_per_kwh // 1000
    if revenue > ceiling:
        flags.append(
            {
                "check": "revenue_above_tariff",
                "detail": f"revenue {revenue} exceeds {energy} Wh x "
                f"{settings.oracle_guard_max_tariff_minor_per_kwh}/kWh = {ceiling}",
            }
        )
    devices = computed.attestation.device_count
    silent = computed.silent_devices
    if devices and silent / devices > settings.oracle_guard_max_silent_fraction:
        flags.append(
            {
                "check": "devices_silent",
                "detail": f"{silent} of {devices} devices sent no reading in the period "
                f"(allowed {settings.oracle_guard_max_silent_fraction:.0%})",
            }
        )
    return flags
