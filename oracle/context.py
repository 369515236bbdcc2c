"""What the oracle needs from the outside, gathered once: settings, chain client, deployment
record, accounts and the signers. The oracle set, its version and the threshold are the
registry's, re-read before every step (`refresh`), so a change on-chain takes effect at
once: signers outside the set stop being asked, in-flight epochs are signed again."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

import psycopg
from web3.contract import Contract

from gridshare.core.chain.accounts import Accounts, ChainAccount, load_accounts
from gridshare.core.chain.attestation import SigningContext, signing_context
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deployment import DeploymentRecord, read_deployment
from gridshare.core.chain.device_keys import DeviceKeys
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.oracle.provenance import ChainView
from gridshare.oracle.remote import RemoteSigner
from gridshare.oracle.signer import OracleSigner


@dataclass
class OracleContext:
    settings: Settings
    client: ChainClient
    record: DeploymentRecord
    accounts: Accounts
    _signing: dict[str, SigningContext] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings: Settings) -> OracleContext:
        """Connect to the chain and read the deployment; one-line errors when either fails.
        The database is used as the oracle's role (it writes only the oracle's tables)."""
        settings = settings.for_service("oracle")
        client = ChainClient(settings)
        return cls(
            settings=settings,
            client=client,
            record=read_deployment(settings),
            accounts=load_accounts(settings),
        )

    @property
    def registry_address(self) -> str:
        return self.record.address("AttestationRegistry")

    @cached_property
    def registry(self) -> Contract:
        return self.client.contract("AttestationRegistry", self.registry_address)

    @property
    def submitter(self) -> ChainAccount:
        """Anyone may submit signed attestations; the first oracle key pays the gas."""
        return self.accounts.oracles[0]

    def chain_view(self) -> ChainView:
        """A fresh view of the chain (its own key history): each signer gets its own."""
        return ChainView(
            self.registry,
            DeviceKeys(self.client.w3, self.record.address("DeviceRegistry"), self.record.block),
        )

    @cached_property
    def chain(self) -> ChainView:
        """The aggregator's own view of the chain."""
        return self.chain_view()

    def refresh(self) -> None:
        """Forget what was read from the registry: set, threshold, versions."""
        for name in ("threshold", "oracle_set", "signers"):
            self.__dict__.pop(name, None)
        with self._lock:
            self._signing.clear()

    @cached_property
    def threshold(self) -> int:
        return int(self.client.call(self.registry.functions.threshold()))

    def signer(self, account: ChainAccount, db_url: str | None = None) -> OracleSigner:
        """A signer for one key, reading `db_url` (default: the signers' read-only URL) and
        its own view of the chain."""
        return OracleSigner(
            account=account,
            db_url=db_url or self.settings.service_db_url("oracle_signer"),
            signing=self.signing_context,
            settings=self.settings,
            chain=self.chain_view(),
        )

    @cached_property
    def oracle_set(self) -> set[str]:
        """The registry's current oracle addresses, lower case."""
        return {a.lower() for a in self.client.call(self.registry.functions.oracles())}

    def signing_context(self, pool: str) -> SigningContext:
        """Oracle-set version and the pool's veto count, as the registry has them now."""
        with self._lock:
            known = self._signing.get(pool)
        if known is None:
            known = signing_context(self.client, self.registry_address, text_id(pool))
            with self._lock:
                self._signing[pool] = known
        return known

    def sync_pool_terms(self, conn: psycopg.Connection, pool: str) -> None:
        """Copy the pool's currency exponent and the stablecoin's decimals from the registry
        into the pools table, where the signers read them to convert revenue."""
        token, _, _, _, exponent = self.client.call(self.registry.functions.pool(text_id(pool)))
        if int(token, 16) == 0:
            return  # not on-chain (yet): nothing to copy
        conn.execute(
            "UPDATE pools SET currency_exponent = %s, coin_decimals = %s WHERE name = %s"
            " AND (currency_exponent, coin_decimals) IS DISTINCT FROM (%s, %s)",
            (exponent, self.coin_decimals, pool, exponent, self.coin_decimals),
        )

    @cached_property
    def coin_decimals(self) -> int:
        return int(self.client.call(self.registry.functions.coinDecimals()))

    @cached_property
    def signers(self) -> list[OracleSigner | RemoteSigner]:
        """Our oracle keys that are in the registry's current set: in this process, or its
        own process where a URL is set."""
        return [
            RemoteSigner(account.address, url, self.settings.oracle_signer_timeout_seconds)
            if (url := self.settings.oracle_signer_urls.get(i))
            else self.signer(account, self.settings.oracle_signer_db_urls.get(i))
            for i, account in enumerate(self.accounts.oracles)
            if account.address.lower() in self.oracle_set
        ]
