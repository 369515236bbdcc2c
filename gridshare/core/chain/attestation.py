"""Revenue attestations as the AttestationRegistry accepts them: EIP-712 typed data, oracle
signatures in ascending signer order, and submission.

The domain is {name "GridshareAttestation", version "1", chainId, verifyingContract}, so a
signature is only good on one chain for one registry. The signed struct also names the
registry's oracle-set version and the pool's veto count (`SigningContext`): a signature
stops counting when the oracle set changes or the epoch is vetoed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from web3.types import TxReceipt

from gridshare.core.chain.accounts import ChainAccount
from gridshare.core.chain.client import ChainClient

DOMAIN_NAME = "GridshareAttestation"
DOMAIN_VERSION = "1"
ATTESTATION_FIELDS = [
    {"name": "poolId", "type": "bytes32"},
    {"name": "epoch", "type": "uint64"},
    {"name": "periodStart", "type": "uint64"},
    {"name": "periodEnd", "type": "uint64"},
    {"name": "energyWh", "type": "uint256"},
    {"name": "revenueMinor", "type": "uint256"},
    {"name": "investorAmount", "type": "uint256"},
    {"name": "deviceCount", "type": "uint32"},
    {"name": "leavesRoot", "type": "bytes32"},
]
SIGNED_FIELDS = [
    *ATTESTATION_FIELDS,
    {"name": "oracleSetVersion", "type": "uint64"},
    {"name": "poolVetoes", "type": "uint64"},
]
HKD_EXPONENT = 2  # minor units of the local stack's currency: cents
TEST_COIN_DECIMALS = 6


def investor_amount(
    revenue_minor: int,
    share_bps: int,
    currency_exponent: int = HKD_EXPONENT,
    coin_decimals: int = TEST_COIN_DECIMALS,
) -> int:
    """Investor share in stablecoin units of revenue in minor currency units, rounded down.

    revenue x 10^-exponent currency x share_bps x 10^-4 = amount x 10^-decimals, so
    amount = floor(revenue x share_bps x 10^decimals / 10^(exponent + 4)): exact when the
    coin has at least exponent + 4 decimals (HKD cents and a 6-decimal coin: revenue x
    share_bps), never more than the exact share otherwise. The registry requires this figure.
    """
    gross = revenue_minor * share_bps
    shift = coin_decimals - currency_exponent - 4
    return gross * 10**shift if shift >= 0 else gross // 10**-shift


@dataclass(frozen=True)
class SigningContext:
    """What, besides the figures, a signature is bound to (read from the registry)."""

    chain_id: int
    registry: str
    oracle_set_version: int
    pool_vetoes: int = 0


@dataclass(frozen=True)
class Attestation:
    """One pool's figures for one epoch (base units: Wh, cents, stablecoin units, seconds)."""

    pool_id: bytes
    epoch: int
    period_start: int
    period_end: int
    energy_wh: int
    revenue_minor: int
    investor_amount: int
    device_count: int
    leaves_root: bytes

    def as_tuple(self) -> tuple[Any, ...]:
        """The struct as a contract-call argument."""
        return astuple(self)

    def message(self, ctx: SigningContext) -> dict[str, Any]:
        names = [f["name"] for f in SIGNED_FIELDS]
        values = (*astuple(self), ctx.oracle_set_version, ctx.pool_vetoes)
        return dict(zip(names, values, strict=True))

    def typed_data(self, ctx: SigningContext) -> dict[str, Any]:
        """The full EIP-712 typed data (eth_signTypedData_v4 shape)."""
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Attestation": SIGNED_FIELDS,
            },
            "primaryType": "Attestation",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": ctx.chain_id,
                "verifyingContract": to_checksum_address(ctx.registry),
            },
            "message": self.message(ctx),
        }

    def digest(self, ctx: SigningContext) -> bytes:
        """The EIP-712 digest, equal to the registry's `hashAttestation`."""
        signable = encode_typed_data(full_message=self.typed_data(ctx))
        return keccak(b"\x19" + signable.version + signable.header + signable.body)


def signing_context(client: ChainClient, registry: str, pool_id: bytes) -> SigningContext:
    """The registry's current oracle-set version and the pool's veto count."""
    contract = client.contract("AttestationRegistry", registry)
    return SigningContext(
        chain_id=client.settings.chain_id,
        registry=to_checksum_address(registry),
        oracle_set_version=int(client.call(contract.functions.oracleSetVersion())),
        pool_vetoes=int(client.call(contract.functions.vetoes(pool_id))),
    )


def sign_attestation(
    attestation: Attestation, signer: ChainAccount, ctx: SigningContext
) -> tuple[str, bytes]:
    """(signer address, 65-byte signature) of one oracle."""
    signable = encode_typed_data(full_message=attestation.typed_data(ctx))
    signed = Account.sign_message(signable, signer.private_key)
    return signer.address, bytes(signed.signature)


def ordered_signatures(signatures: Iterable[tuple[str, bytes]]) -> list[bytes]:
    """Signatures sorted by ascending signer address, as `submit` requires."""
    return [sig for _, sig in sorted(signatures, key=lambda item: int(item[0], 16))]


def submit_attestation(
    client: ChainClient,
    registry: str,
    attestation: Attestation,
    signatures: Iterable[tuple[str, bytes]],
    sender: ChainAccount,
) -> TxReceipt:
    """Send `submit`; refusals raise ContractRevert naming the registry's custom error."""
    contract = client.contract("AttestationRegistry", registry)
    return client.transact(
        contract.functions.submit(attestation.as_tuple(), ordered_signatures(signatures)),
        sender,
        what=f"submit attestation epoch {attestation.epoch}",
    )
