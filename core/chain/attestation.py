"""Revenue attestations as the AttestationRegistry accepts them: EIP-712 typed data, oracle
signatures in ascending signer order, and submission.

The domain is {name "GridshareAttestation", version "1", chainId, verifyingContract}, so a
signature is only good on one chain for one registry.
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


def investor_amount(revenue_minor: int, share_bps: int) -> int:
    """Investor share in stablecoin units (6 decimals) of revenue in HKD cents.

    cents -> 6-decimal units is x10^4 and basis points are /10^4, so exactly
    revenue_minor * share_bps; the registry refuses any other figure.
    """
    return revenue_minor * share_bps


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

    def message(self) -> dict[str, Any]:
        names = [f["name"] for f in ATTESTATION_FIELDS]
        return dict(zip(names, astuple(self), strict=True))

    def typed_data(self, chain_id: int, registry: str) -> dict[str, Any]:
        """The full EIP-712 typed data (eth_signTypedData_v4 shape)."""
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Attestation": ATTESTATION_FIELDS,
            },
            "primaryType": "Attestation",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": chain_id,
                "verifyingContract": to_checksum_address(registry),
            },
            "message": self.message(),
        }

    def digest(self, chain_id: int, registry: str) -> bytes:
        """The EIP-712 digest, equal to the registry's `hashAttestation`."""
        signable = encode_typed_data(full_message=self.typed_data(chain_id, registry))
        return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign_attestation(
    attestation: Attestation, signer: ChainAccount, chain_id: int, registry: str
) -> tuple[str, bytes]:
    """(signer address, 65-byte signature) of one oracle."""
    signable = encode_typed_data(full_message=attestation.typed_data(chain_id, registry))
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
