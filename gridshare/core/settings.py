"""One settings object for every component, read from GRIDSHARE_* variables and `.env`."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from gridshare.core.errors import ConfigError

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
# The database role of each service (docs/database.md, "Roles"): the local stack creates
# them, migrations 0047 and 0050 grant them their rights. The API and the signers share the
# reader.
Service = Literal["ingest", "oracle", "api", "oracle_signer", "bridge"]
SERVICE_ROLES: dict[str, str] = {
    "ingest": "gridshare_ingest",
    "oracle": "gridshare_oracle",
    "api": "gridshare_reader",
    "oracle_signer": "gridshare_reader",
    "bridge": "gridshare_bridge",
}
DEV_CHAIN_ID = 31337  # the only chain the public development mnemonic may be used on


class Settings(BaseSettings):
    """Configuration; defaults are the local stack's (SPEC §2)."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDSHARE_", env_file=".env", extra="ignore", frozen=True
    )

    db_url: str = "postgresql://gridshare@127.0.0.1:55432/gridshare"
    db_flavor: Literal["auto", "timescale", "postgres"] = "auto"  # schema path; auto: what works
    pg_bin_dir: str = ""  # the local stack's PostgreSQL binaries; empty: newest installed
    db_external: bool = False  # the database belongs to its owner: the stack leaves it alone
    # Each service's own database URL, as its own role (docs/database.md, "Roles"). Empty:
    # on the local stack, its role there; on an external database, GRIDSHARE_DB_URL.
    ingest_db_url: str = ""  # writes telemetry, device state, quarantine, flags
    oracle_db_url: str = ""  # the attestation loop: writes only the oracle's tables
    api_db_url: str = ""  # read-only
    oracle_signer_db_url: str = ""  # read-only; GRIDSHARE_ORACLE_SIGNER_DB_URLS per signer
    bridge_db_url: str = ""  # the OCPP and SunSpec bridges: meter states and meter evidence
    mqtt_url: str = "mqtt://127.0.0.1:11883"
    mqtt_device_url: str = "mqtts://127.0.0.1:18883"  # the devices' TLS listener
    rpc_url: str = "http://127.0.0.1:18545"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_host: str = "127.0.0.1"
    ingest_metrics_port: int = Field(default=9101, ge=0, le=65535)
    ingest_metrics_host: str = "127.0.0.1"  # 0.0.0.0 to let a remote Prometheus scrape
    ingest_batch_size: int = Field(default=500, ge=1, le=10000)  # messages per commit, at most
    ingest_batch_seconds: float = Field(default=0.2, gt=0, le=60)  # oldest message waits at most
    ingest_offline_seconds: float = Field(default=300, gt=0)  # silence before a device is offline
    ingest_worker: str = Field(default="main", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    ingest_client_id: str = ""  # MQTT client id; empty: gridshare-ingest-{hostname}-{worker}
    ingest_max_clock_ahead_seconds: int = Field(default=300, ge=0)  # device ts ahead of receipt
    ingest_max_backfill_seconds: int = Field(default=2_592_000, ge=0)  # device ts behind receipt
    ingest_capacity_margin: float = Field(default=1.5, ge=1)  # on rated power x elapsed time
    ingest_capacity_slack_seconds: float = Field(default=900, ge=0)  # added to elapsed time
    ingest_keep_evidence: bool = True  # false only to measure its cost: rows are unverifiable
    ingest_shared: bool = False  # several workers: share telemetry via $share/gridshare-ingest
    # Clustered broker (docs/scale-out.md): nodes of the local cluster (0: one Mosquitto, or
    # what `stack up --cluster N` recorded); its loopback ports start at cluster_port; a cluster
    # run elsewhere is named by its device (MQTT) and consumer (AMQP) URLs, comma-separated.
    cluster: int = Field(default=0, ge=0, le=9)
    cluster_port: int = Field(default=11890, ge=1024, le=65000)
    cluster_mqtt_urls: str = ""
    cluster_amqp_urls: str = ""
    period_seconds: int = Field(default=86400, ge=1)
    quarantine_retention_days: int = Field(default=30, ge=1)
    quarantine_payload_bytes: int = Field(default=1024, ge=0, le=16384)  # raw bytes kept
    quarantine_device_burst: int = Field(default=20, ge=1)  # rows stored per device at once
    quarantine_device_per_minute: float = Field(default=6.0, gt=0)  # ... then this many
    state_dir: Path = Path("./.gridshare")
    log_level: str = "INFO"
    api_domain: str = ""  # SIWE domain (host[:port]); empty: api_host:api_port
    api_jwt_secret: str = ""  # HS256 key; empty: generated once into the state dir (0600)
    api_key: str = ""  # X-API-Key for operator endpoints; empty: generated into the state dir
    api_token_ttl_seconds: int = Field(default=3600, ge=60)
    chain_id: int = 31337
    mnemonic: str = ANVIL_MNEMONIC
    investors: int = Field(default=3, ge=1, le=20)
    oracles: int = Field(default=5, ge=1, le=20)
    oracle_threshold: int = Field(default=3, ge=1, le=20)
    pool_share_bps: int = Field(default=7000, ge=0, le=10000)  # investors' revenue share
    stablecoin_address: str = ""  # an existing ERC-20 for `deploy`; empty: a test coin
    # challenge window of new attestations; None: 60 s on the local chain, 24 h elsewhere
    challenge_period_seconds: int | None = Field(default=None, ge=60, le=7 * 86400)
    # the oracle (docs/oracle.md), GRIDSHARE_ORACLE_*: periods and figures
    oracle_silent_allowance_seconds: int = Field(default=3600, ge=0)  # device time
    oracle_reading_interval_seconds: int = Field(default=300, ge=1)  # uptime per good reading
    oracle_cutoff_margin_seconds: float = Field(default=2.0, ge=0)  # batches still committing
    # a device whose period figure exceeds rated power x period (or its energy at the pool's
    # maximum tariff) times this margin is excluded as implausible
    oracle_device_power_margin: float = Field(default=1.25, ge=1)
    # ... the loop
    oracle_poll_seconds: float = Field(default=5.0, gt=0)
    oracle_metrics_port: int = Field(default=9102, ge=0, le=65535)  # 0: no metrics server
    oracle_auto_fund: bool = False  # fund what is owed after each confirmed epoch
    # ... signers: per-signer database URLs by index in accounts.json "oracles" (JSON object)
    oracle_signer_db_urls: dict[int, str] = Field(default_factory=dict)
    # signers running as their own process (`gridshare oracle signer`), by the same index:
    # JSON object {index: "http://host:port"}; the others run in the oracle's process
    oracle_signer_urls: dict[int, str] = Field(default_factory=dict)
    oracle_signer_timeout_seconds: float = Field(default=120, gt=0)
    oracle_sign_attempts: int = Field(default=2, ge=1)  # recompute once when signers disagree
    # ... submission
    oracle_receipt_timeout_seconds: float = Field(default=120, gt=0)
    # ... anomaly guard
    oracle_guard_trailing_epochs: int = Field(default=7, ge=1)
    oracle_guard_min_history: int = Field(default=3, ge=1)
    oracle_guard_max_ratio: float = Field(default=4.0, gt=1)  # revenue vs trailing average
    oracle_guard_max_tariff_minor_per_kwh: int = Field(default=2000, ge=0)  # HKD 20/kWh
    oracle_guard_max_silent_fraction: float = Field(default=0.5, ge=0, le=1)

    @field_validator("mnemonic")
    @classmethod
    def _development_mnemonic_only_on_dev_chain(cls, value: str, info: ValidationInfo) -> str:
        chain_id = info.data.get("chain_id", DEV_CHAIN_ID)
        if value.split() == ANVIL_MNEMONIC.split() and chain_id != DEV_CHAIN_ID:
            raise ValueError(
                f"is the public development mnemonic: refused on chain id {chain_id}"
                f" (allowed only on {DEV_CHAIN_ID}); set your own"
            )
        return value

    def service_db_url(self, service: Service) -> str:
        """The URL `service` connects with: its own setting; else, on the local stack (which
        creates every role), its role on GRIDSHARE_DB_URL's server and database; else, on an
        external database whose operator may not have created the roles, GRIDSHARE_DB_URL."""
        configured: str = getattr(self, f"{service}_db_url")
        if configured or self.db_external:
            return configured or self.db_url
        url = urlsplit(self.db_url)
        host = url.netloc.rpartition("@")[2]
        return url._replace(netloc=f"{SERVICE_ROLES[service]}@{host}").geturl()

    def for_service(self, service: Service) -> Settings:
        """These settings with GRIDSHARE_DB_URL replaced by the service's own URL, so all
        its connections (and its child processes') use its role."""
        return self.model_copy(update={"db_url": self.service_db_url(service)})

    @property
    def db_port(self) -> int:
        return urlsplit(self.db_url).port or 5432

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        return urlsplit(self.mqtt_url).port or 1883

    @property
    def mqtt_device_host(self) -> str:
        return urlsplit(self.mqtt_device_url).hostname or "127.0.0.1"

    @property
    def mqtt_device_port(self) -> int:
        return urlsplit(self.mqtt_device_url).port or 8883

    @property
    def rpc_port(self) -> int:
        return urlsplit(self.rpc_url).port or 8545

    def as_env(self) -> dict[str, str]:
        """The GRIDSHARE_* variables that make a child process use these settings."""
        return {
            "GRIDSHARE_STATE_DIR": str(self.state_path),
            "GRIDSHARE_DB_URL": self.db_url,
            **{
                f"GRIDSHARE_{s.upper()}_DB_URL": getattr(self, f"{s}_db_url") for s in SERVICE_ROLES
            },
            "GRIDSHARE_DB_FLAVOR": self.db_flavor,
            "GRIDSHARE_DB_EXTERNAL": str(self.db_external).lower(),
            "GRIDSHARE_PG_BIN_DIR": self.pg_bin_dir,
            "GRIDSHARE_MQTT_URL": self.mqtt_url,
            "GRIDSHARE_MQTT_DEVICE_URL": self.mqtt_device_url,
            "GRIDSHARE_RPC_URL": self.rpc_url,
            "GRIDSHARE_API_HOST": self.api_host,
            "GRIDSHARE_API_PORT": str(self.api_port),
            "GRIDSHARE_INGEST_METRICS_PORT": str(self.ingest_metrics_port),
            "GRIDSHARE_PERIOD_SECONDS": str(self.period_seconds),
            **self._oracle_env(),
        }

    def _oracle_env(self) -> dict[str, str]:
        """The oracle's fields, by their variable names (dicts as JSON, booleans in lower case)."""
        env = {}
        for name in type(self).model_fields:
            if name.startswith("oracle_"):
                value = getattr(self, name)
                if isinstance(value, dict):
                    text = json.dumps({str(k): v for k, v in value.items()})
                else:
                    text = str(value).lower() if isinstance(value, bool) else str(value)
                env["GRIDSHARE_" + name.upper()] = text
        return env

    @property
    def state_path(self) -> Path:
        """The state dir as an absolute path, so child processes may change directory."""
        return self.state_dir.expanduser().resolve()


@lru_cache
def get_settings(**overrides: object) -> Settings:
    """The process's settings: the environment, `.env` and a command's own options
    (`overrides`). A malformed value is a one-line `ConfigError` naming its variable.
    Tests build their own `Settings` instead."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"GRIDSHARE_{str(first['loc'][0]).upper()}:", first["msg"]) from None
    except SettingsError as exc:  # a dict-valued variable that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "*"
        raise ConfigError(f"GRIDSHARE_{name}:", "is not a JSON object") from None
