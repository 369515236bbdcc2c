"""The issuer's servicing actions on-chain: the guardian's veto, the KYC allow-list, and the
agent's recovery kit on every pool token (freeze, unfreeze, recover a lost wallet, a forced
transfer). Local keys from accounts.json sign; each action returns what it sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from eth_utils import is_address, keccak, to_checksum_address
from web3.contract import Contract
from web3.contract.contract import ContractFunction

from gridshare.core.chain.accounts import ChainAccount, load_accounts
from gridshare.core.chain.client import ChainClient
from gridshare.core.chain.deployment import DeploymentRecord, read_deployment
from gridshare.core.errors import GridshareError
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings


@dataclass(frozen=True)
class Sent:
    """One transaction: what it did and its hash."""

    what: str
    tx_hash: str


class Servicing:
    """A chain client, the deployment record and the local keys, for one command."""

    def __init__(self, settings: Settings, client: ChainClient | None = None) -> None:
        self.client = client or ChainClient(settings)
        self.record: DeploymentRecord = read_deployment(settings)
        self.accounts = load_accounts(settings)

    def _send(self, fn: ContractFunction, signer: ChainAccount, what: str) -> Sent:
        receipt = self.client.transact(fn, signer, what=what)
        return Sent(what, "0x" + bytes(receipt["transactionHash"]).hex())

    def _token(self, pool: str) -> Contract:
        entry = self.record.pools.get(pool)
        if entry is None:
            raise GridshareError(f"pool {pool} is not in the deployment record")
        return self.client.contract("RevenueShareToken", entry.token)

    # ----- guardian -----

    def veto(self, pool: str, epoch: int, reason: str) -> Sent:
        """Void a pending epoch (and the later ones) of the pool; the reason's hash is logged."""
        registry = self.client.contract(
            "AttestationRegistry", self.record.address("AttestationRegistry")
        )
        fn = registry.functions.veto(text_id(pool), epoch, keccak(text=reason))
        return self._send(fn, self.accounts.guardian, f"veto {pool} epoch {epoch}")

    # ----- KYC allow-list -----

    def allow(self, untrusted_address: str, until: date) -> Sent:
        """Admit an investor through the end of `until` (UTC)."""
        address = checked_address(untrusted_address)
        expiry = datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC)
        kyc = self.client.contract("InvestorRegistry", self.record.address("InvestorRegistry"))
        fn = kyc.functions.admit(address, int(expiry.timestamp()))
        return self._send(fn, self.accounts.kyc_agent, f"allow {address} until {until}")

    def disallow(self, untrusted_address: str) -> Sent:
        address = checked_address(untrusted_address)
        kyc = self.client.contract("InvestorRegistry", self.record.address("InvestorRegistry"))
        return self._send(
            kyc.functions.remove(address), self.accounts.kyc_agent, f"disallow {address}"
        )

    # ----- recovery kit, on every pool token -----

    def freeze(self, untrusted_address: str, frozen: bool) -> list[Sent]:
        """Freeze (or unfreeze) the holder on every pool token where it is not so already."""
        address = checked_address(untrusted_address)
        sent = []
        for pool in sorted(self.record.pools):
            token = self._token(pool)
            if bool(self.client.call(token.functions.isFrozen(address))) == frozen:
                continue
            fn = token.functions.freeze(address) if frozen else token.functions.unfreeze(address)
            verb = "freeze" if frozen else "unfreeze"
            sent.append(self._send(fn, self.accounts.agent, f"{verb} {address} in {pool}"))
        return sent

    def recover(self, untrusted_lost: str, untrusted_replacement: str) -> list[Sent]:
        """Move the lost wallet's tokens, unclaimed revenue and freeze to the replacement, in
        every pool; the lost wallet is blocked for good."""
        lost = checked_address(untrusted_lost)
        replacement = checked_address(untrusted_replacement)
        sent = []
        for pool in sorted(self.record.pools):
            token = self._token(pool)
            if self.client.call(token.functions.isLost(lost)):
                continue
            fn = token.functions.recoverWallet(lost, replacement)
            sent.append(self._send(fn, self.accounts.agent, f"recover {lost} in {pool}"))
        return sent

    def force_transfer(
        self, pool: str, untrusted_from: str, untrusted_to: str, amount: int
    ) -> Sent:
        """Move `amount` token base units (10^-18) of the pool's token without the holder."""
        source, target = checked_address(untrusted_from), checked_address(untrusted_to)
        if amount <= 0:
            raise GridshareError(f"amount must be positive, got {amount}")
        fn = self._token(pool).functions.forcedTransfer(source, target, amount)
        return self._send(fn, self.accounts.agent, f"force-transfer {amount} in {pool}")


def checked_address(untrusted_address: str) -> str:
    """A checksummed address, or a one-line error."""
    if not is_address(untrusted_address):
        raise GridshareError(f"{untrusted_address!r} is not an Ethereum address")
    return to_checksum_address(untrusted_address)
