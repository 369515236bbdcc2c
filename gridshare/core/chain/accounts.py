"""The local chain's accounts, derived from the mnemonic; `accounts.json` (SPEC §9, mode 0600).

Mnemonic indices: 0 admin (also the KYC agent), 1 operator, then `settings.oracles` oracle
signers, then `settings.investors` investors (defaults: 2..6 oracles, 7..9 investors).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from gridshare.core.errors import ConfigError
from gridshare.core.settings import Settings

Account.enable_unaudited_hdwallet_features()


@dataclass(frozen=True)
class ChainAccount:
    """An address with its private key (0x-hex)."""

    address: str
    private_key: str

    @property
    def signer(self) -> LocalAccount:
        return Account.from_key(self.private_key)

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "private_key": self.private_key}


@dataclass(frozen=True)
class Accounts:
    """The roles of SPEC §9."""

    admin: ChainAccount
    operator: ChainAccount
    oracles: list[ChainAccount]
    investors: list[ChainAccount]

    @property
    def kyc_agent(self) -> ChainAccount:
        return self.admin

    @property
    def guardian(self) -> ChainAccount:
        """GUARDIAN_ROLE (vetoes) on the local chain; an independent trustee elsewhere."""
        return self.admin

    @property
    def agent(self) -> ChainAccount:
        """AGENT_ROLE of the pool tokens (freeze, recovery) on the local chain."""
        return self.admin

    def to_json(self) -> dict[str, Any]:
        return {
            "admin": self.admin.to_json(),
            "operator": self.operator.to_json(),
            "oracles": [a.to_json() for a in self.oracles],
            "investors": [a.to_json() for a in self.investors],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Accounts:
        def one(item: dict[str, str]) -> ChainAccount:
            return ChainAccount(item["address"], item["private_key"])

        return cls(
            admin=one(data["admin"]),
            operator=one(data["operator"]),
            oracles=[one(i) for i in data["oracles"]],
            investors=[one(i) for i in data["investors"]],
        )


def derive_account(mnemonic: str, index: int) -> ChainAccount:
    """The account at m/44'/60'/0'/0/{index}."""
    acct = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
    return ChainAccount(acct.address, "0x" + bytes(acct.key).hex())


def derive_accounts(settings: Settings) -> Accounts:
    """Admin, operator, oracles and investors from the mnemonic, by index."""
    if settings.oracle_threshold > settings.oracles:
        raise ConfigError(
            "GRIDSHARE_ORACLE_THRESHOLD",
            f"is {settings.oracle_threshold}, more than GRIDSHARE_ORACLES={settings.oracles}",
        )
    first_investor = 2 + settings.oracles
    return Accounts(
        admin=derive_account(settings.mnemonic, 0),
        operator=derive_account(settings.mnemonic, 1),
        oracles=[derive_account(settings.mnemonic, 2 + i) for i in range(settings.oracles)],
        investors=[
            derive_account(settings.mnemonic, first_investor + i) for i in range(settings.investors)
        ],
    )


def accounts_path(settings: Settings) -> Path:
    return settings.state_path / "accounts.json"


def write_accounts(settings: Settings, accounts: Accounts) -> Path:
    """Write accounts.json with mode 0600 (created so, never world-readable in between)."""
    path = accounts_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".accounts.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(accounts.to_json(), out, indent=2)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def load_accounts(settings: Settings) -> Accounts:
    """accounts.json from the state dir; derived from the mnemonic and written if missing."""
    path = accounts_path(settings)
    if path.exists():
        return Accounts.from_json(json.loads(path.read_text()))
    accounts = derive_accounts(settings)
    write_accounts(settings, accounts)
    return accounts
