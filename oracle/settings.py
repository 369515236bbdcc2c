"""The oracle's own settings (GRIDSHARE_ORACLE_*), beside the shared `Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OracleSettings(BaseSettings):
    """Knobs of the attestation loop, the signers and the anomaly guard."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDSHARE_ORACLE_", env_file=".env", extra="ignore", frozen=True
    )

    # periods and figures
    silent_allowance_seconds: int = Field(default=3600, ge=0)  # device time
    reading_interval_seconds: int = Field(default=300, ge=1)  # uptime per good reading
    cutoff_margin_seconds: float = Field(default=2.0, ge=0)  # for batches still committing
    # a device whose period figure exceeds rated power x period (or its energy at the pool's
    # maximum tariff) times this margin is excluded as implausible
    device_power_margin: float = Field(default=1.25, ge=1)
    # the loop
    poll_seconds: float = Field(default=5.0, gt=0)
    metrics_port: int = Field(default=9102, ge=0, le=65535)  # 0: no metrics server
    auto_fund: bool = False  # fund what is owed after each confirmed epoch
    # signers: per-signer database URLs by index in accounts.json "oracles" (JSON object)
    signer_db_urls: dict[int, str] = Field(default_factory=dict)
    # signers running as their own process (`gridshare oracle signer`), by the same index:
    # JSON object {index: "http://host:port"}; the others run in the oracle's process
    signer_urls: dict[int, str] = Field(default_factory=dict)
    signer_timeout_seconds: float = Field(default=120, gt=0)
    sign_attempts: int = Field(default=2, ge=1)  # recompute once when signers disagree
    # submission
    receipt_timeout_seconds: float = Field(default=120, gt=0)
    # anomaly guard
    guard_trailing_epochs: int = Field(default=7, ge=1)
    guard_min_history: int = Field(default=3, ge=1)
    guard_max_ratio: float = Field(default=4.0, gt=1)  # revenue vs trailing average, either way
    guard_max_tariff_minor_per_kwh: int = Field(default=2000, ge=0)  # HKD 20/kWh
    guard_max_silent_fraction: float = Field(default=0.5, ge=0, le=1)
    # fault injection for the reliability suite: exit right after this step
    # ("computed", "signed", "broadcast"); empty in production
    crash_after: str = ""
