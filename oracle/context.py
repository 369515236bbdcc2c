"""What the oracle needs from the outside, gathered once: settings, chain client, deployment
record, accounts and the signers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from web3.contract import Contract

from gridshare.core.chain.accounts import Accounts, ChainAccount, load_accounts
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deployment import DeploymentRecord, read_deployment
from gridshare.core.chain.device_keys import DeviceKeys
from gridshare.core.settings import Settings
from gridshare.oracle.provenance import ChainView
from gridshare.oracle.remote import RemoteSigner
from gridshare.oracle.settings import OracleSettings
from gridshare.oracle.signer import OracleSigner


@dataclass
class OracleContext:
    settings: Settings
    oracle: OracleSettings
    client: ChainClient
    record: DeploymentRecord
    accounts: Accounts

    @classmethod
    def create(cls, settings: Settings, oracle: OracleSettings | None = None) -> OracleContext:
        """Connect to the chain and read the deployment; one-line errors when either fails."""
        client = ChainClient(settings)
        return cls(
            settings=settings,
            oracle=oracle or OracleSettings(),
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

    @cached_property
    def threshold(self) -> int:
        return int(self.client.call(self.registry.functions.threshold()))

    def signer(self, account: ChainAccount, db_url: str | None = None) -> OracleSigner:
        """A signer for one key, reading `db_url` and its own view of the chain."""
        return OracleSigner(
            account=account,
            db_url=db_url or self.settings.db_url,
            chain_id=self.settings.chain_id,
            registry=self.registry_address,
            settings=self.oracle,
            chain=self.chain_view(),
        )

    @cached_property
    def signers(self) -> list[OracleSigner | RemoteSigner]:
        """Every oracle key: in this process, or its own process where a URL is set."""
        return [
            RemoteSigner(account.address, url, self.oracle.signer_timeout_seconds)
            if (url := self.oracle.signer_urls.get(i))
            else self.signer(account, self.oracle.signer_db_urls.get(i))
            for i, account in enumerate(self.accounts.oracles)
        ]
