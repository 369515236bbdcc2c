"""The deployment record `deployments/{chain_id}.json` under the state dir (SPEC §9)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from gridshare.core.errors import NotDeployed
from gridshare.core.settings import Settings

CONTRACT_NAMES = ("InvestorRegistry", "DeviceRegistry", "AttestationRegistry")


class PoolRecord(BaseModel):
    """One pool as recorded: its id (keccak256 of the name, 0x-hex) and token."""

    pool_id: str
    token: str
    device_type: str
    share_bps: int


class DeploymentRecord(BaseModel):
    """Addresses of the deployed contracts on one chain, and the pools created since."""

    chain_id: int
    block: int
    contracts: dict[str, str]
    pools: dict[str, PoolRecord] = Field(default_factory=dict)

    def address(self, name: str) -> str:
        return self.contracts[name]

    @property
    def stablecoin(self) -> str:
        """The coin revenue is paid in: an existing ERC-20 or the deployed test coin."""
        return self.contracts.get("Stablecoin") or self.contracts["TestStablecoin"]


def deployment_path(settings: Settings, chain_id: int | None = None) -> Path:
    return settings.state_path / "deployments" / f"{chain_id or settings.chain_id}.json"


def read_deployment(settings: Settings, chain_id: int | None = None) -> DeploymentRecord:
    """The record for this chain, or NotDeployed."""
    path = deployment_path(settings, chain_id)
    try:
        return DeploymentRecord.model_validate_json(path.read_text())
    except FileNotFoundError as exc:
        raise NotDeployed(f"no deployment record at {path}; run `gridshare deploy` first") from exc


def write_deployment(settings: Settings, record: DeploymentRecord) -> Path:
    """Write the record atomically."""
    path = deployment_path(settings, record.chain_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.model_dump(), indent=2) + "\n")
    tmp.replace(path)
    return path


@contextlib.contextmanager
def record_lock(settings: Settings) -> Iterator[None]:
    """Serialise read-modify-write of the record across processes (deploy, pool creation)."""
    lock_path = settings.state_path / "deployments" / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
