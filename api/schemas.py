"""Response and request models: every field the API returns, typed and documented.

Amounts from the database (minor currency units, Wh) are integers; amounts read from the chain
(token units with 18 decimals, stablecoin units) are decimal strings, since they can exceed
2^53 and JavaScript numbers would round them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

DeviceType = Literal["charging_pile", "pv_plant", "battery_swap"]
BucketName = Literal["5m", "15m", "1h", "6h", "1d"]
UintString = Field(pattern=r"^[0-9]+$", description="unsigned integer as a decimal string")


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. not_found, bad_request")
    message: str = Field(description="one human-readable line")


class ErrorResponse(BaseModel):
    error: ErrorBody


# ----- devices -----


class Device(BaseModel):
    """A device with its latest state as stored by ingest."""

    device_id: str
    type: DeviceType
    pool: str
    address: str = Field(description="the device's signing address (checksummed)")
    active: bool
    online: bool
    status: str | None = Field(description="idle, charging, generating, swapping, fault, ...")
    last_seen: datetime | None = Field(description="when the platform last heard from it")
    device_time: datetime | None = Field(description="device clock of the latest reading")
    last_seq: int | None
    readings: int = Field(description="stored readings")
    power_w: float | None
    soc_pct: float | None
    energy_wh_total: int | None
    sessions_total: int | None
    revenue_minor_total: int | None
    currency: str
    rated_power_w: int = Field(description="rated power recorded at provisioning, W")
    flagged: bool = Field(
        description="an uncleared device flag (e.g. a conflicting reading): left out of "
        "attestations until an operator clears it"
    )


class SignedReading(BaseModel):
    """One stored reading as the device signed it: re-verifiable by anyone."""

    seq: int
    ts: datetime = Field(description="device time of the reading")
    received_at: datetime = Field(description="when ingest received it")
    payload: str | None = Field(
        description="the exact signed bytes (the payload without `sig`, keys sorted, no "
        "whitespace, UTF-8): recover(EIP-191(payload), sig) is the device's signing address; "
        "null for readings stored before evidence was kept"
    )
    sig: str | None = Field(description="0x-hex 65-byte signature r || s || v")


class SignedReadingPage(BaseModel):
    items: list[SignedReading] = Field(description="in device time order, then seq")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


class DevicePage(BaseModel):
    items: list[Device]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


class TelemetryPoint(BaseModel):
    start: datetime
    end: datetime
    energy_wh: int = Field(description="meter difference over the bucket")
    revenue_minor: int = Field(description="meter difference over the bucket")
    readings: int
    power_w_avg: float | None
    power_w_max: float | None
    soc_pct_avg: float | None


class TelemetrySeries(BaseModel):
    device_id: str
    bucket: BucketName
    start: datetime
    end: datetime
    points: list[TelemetryPoint]


class IncomePoint(BaseModel):
    start: datetime
    end: datetime
    revenue_minor: int


class IncomeSeries(BaseModel):
    device_id: str
    bucket: BucketName
    start: datetime
    end: datetime
    currency: str
    total_minor: int
    points: list[IncomePoint]


# ----- pools and attestations -----


class PoolRevenue(BaseModel):
    """Investor revenue of a pool; on-chain figures in stablecoin units (decimal strings)."""

    currency: str
    attested_minor: int = Field(description="gross device revenue attested, minor units")
    investor_attested: str = UintString
    funded: str = UintString
    owed: str = Field(pattern=r"^[0-9]+$", description="final for investors, not yet funded")
    pending: str = Field(
        default="0", pattern=r"^[0-9]+$", description="attested, still in the challenge window"
    )
    distributed: str = Field(
        pattern=r"^[0-9]+$", description="paid into the token, allotted to holders pro rata"
    )
    claimed: str = Field(pattern=r"^[0-9]+$", description="claimed by holders so far")
    stablecoin_decimals: int


class Pool(BaseModel):
    name: str
    pool_id: str = Field(description="0x keccak256 of the name, as on-chain")
    device_type: DeviceType
    share_bps: int = Field(description="investors' share of revenue, basis points")
    token_address: str | None
    token_symbol: str | None
    token_supply: str | None = Field(pattern=r"^[0-9]+$", description="token base units")
    token_decimals: int | None
    devices: int
    devices_online: int
    latest_epoch: int | None
    revenue: PoolRevenue | None = Field(description="null while the chain is unreachable")
    chain_ok: bool


class PoolList(BaseModel):
    items: list[Pool]


class Attestation(BaseModel):
    pool: str
    epoch: int
    period_start: datetime
    period_end: datetime
    energy_wh: int
    revenue_minor: int
    investor_amount: str = UintString
    device_count: int
    merkle_root: str
    signers: list[str]
    state: str
    tx_hash: str | None
    settlement: Literal["none", "pending", "final", "vetoed"] | None = Field(
        default=None,
        description="on-chain: pending in the challenge window, final, or vetoed (null while "
        "the chain is unreachable)",
    )
    challenge_ends: datetime | None = Field(default=None, description="end of the window")
    seconds_left: int | None = Field(default=None, description="of the window, while pending")


class AttestationPage(BaseModel):
    items: list[Attestation]
    next_cursor: str | None


class LeafFields(BaseModel):
    """The ABI-encoded fields of a device's leaf, in order (values as strings: 0x hex for
    bytes32, decimal for integers)."""

    names: list[str]
    types: list[str]
    values: list[str]


class Proof(BaseModel):
    pool: str
    pool_id: str
    epoch: int
    device_id: str
    leaf: str = Field(description="keccak256(keccak256(abi.encode(fields))), 0x hex")
    fields: LeafFields
    proof: list[str]
    merkle_root: str


class ProofCheck(BaseModel):
    pool: str
    epoch: int
    device_id: str
    leaf: str
    valid: bool = Field(description="verifyLeaf on the attestation registry")
    onchain_root: str | None
    registry: str
    signatures: int = Field(description="device-signed readings the leaf is derived from")
    signatures_verified: int = Field(
        description="how many of them say what is stored and recover to the key the device "
        "held on-chain at their time (checked by the API; `gridshare audit` re-checks)"
    )
    signature_problems: list[str]
    excluded: str | None = Field(description="why the leaf counts nothing, if it does not")


class StoredMeters(BaseModel):
    """What the database stores for a reading, beside the bytes the device signed (an auditor
    compares the two)."""

    time: datetime
    energy_wh_total: int
    revenue_minor_total: int
    sessions_total: int | None


class EvidenceReading(SignedReading):
    """A reading that determines a leaf, with what the database stores beside it."""

    roles: list[str] = Field(
        description="which values it determines: first (first reading ever), before_start, "
        "from_start, before_end, from_end (the readings around each period bound)"
    )
    stored: StoredMeters


class KeyRecord(BaseModel):
    """A signing key the device held on-chain (DeviceRegistry events), for device times in
    [valid_from, valid_until); null ends are open."""

    address: str
    valid_from: datetime | None
    valid_until: datetime | None
    block: int


class LeafRecord(BaseModel):
    epoch: int
    leaf: str = Field(description="keccak256(keccak256(abi.encode(fields))), 0x hex")
    fields: LeafFields
    proof: list[str]
    merkle_root: str


class Exclusion(BaseModel):
    reason: str = Field(description="the check the device's readings failed")
    detail: str | None


class ChainRecord(BaseModel):
    """Where to check: compare these addresses with the issuer's published ones."""

    chain_id: int
    attestation_registry: str
    device_registry: str
    deployment_block: int


class Evidence(BaseModel):
    """Everything needed to re-derive one device's leaf of one epoch."""

    pool: str
    pool_id: str
    epoch: int
    device_id: str
    state: str
    period_start: datetime
    period_end: datetime
    data_cutoff: datetime = Field(description="readings received later count in later epochs")
    leaf: LeafRecord
    previous: LeafRecord | None = Field(
        description="the previous epoch's leaf, whose end values are this epoch's start values"
    )
    exclusion: Exclusion | None
    readings: list[EvidenceReading]
    keys: list[KeyRecord] | None = Field(description="null when the chain is unreachable")
    chain: ChainRecord | None


class DeviceEvidence(BaseModel):
    device_id: str
    leaf: str
    values: list[str] = Field(description="the leaf's field values, in `names` order")
    previous_values: list[str] | None
    exclusion: Exclusion | None
    readings: list[EvidenceReading]


class EvidencePage(BaseModel):
    """A page of an epoch's evidence, by device id."""

    pool: str
    pool_id: str
    epoch: int
    state: str
    period_start: datetime
    period_end: datetime
    data_cutoff: datetime
    merkle_root: str
    names: list[str]
    types: list[str]
    chain: ChainRecord | None
    items: list[DeviceEvidence]
    next_cursor: str | None


# ----- auth and investors -----


class NonceRequest(BaseModel):
    address: str = Field(description="0x Ethereum address", examples=["0x" + "ab" * 20])


class NonceResponse(BaseModel):
    nonce: str
    message: str = Field(description="the full EIP-4361 message to sign")
    expires_at: datetime


class LoginRequest(BaseModel):
    message: str
    signature: str


class LoginResponse(BaseModel):
    token: str
    expires_at: datetime
    address: str


class Holding(BaseModel):
    pool: str
    token_address: str
    token_symbol: str | None
    balance: str = UintString
    total_supply: str = UintString
    share_bps: int = Field(description="balance / supply, basis points (floored)")
    claimable: str = UintString
    claimed: str = UintString
    status: Literal["active", "frozen", "recovered"] = Field(
        default="active",
        description="frozen: no transfer or claim until unfrozen (revenue keeps accruing); "
        "recovered: the wallet was replaced, its tokens and revenue moved",
    )


class Portfolio(BaseModel):
    address: str
    holdings: list[Holding]


# ----- operations -----


class DependencyState(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    db: DependencyState
    broker: DependencyState
    chain: DependencyState


class QuarantineItem(BaseModel):
    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    device_id: str | None
    payload_size: int


class QuarantinePage(BaseModel):
    items: list[QuarantineItem]
    next_cursor: str | None


class DeviceUpdate(BaseModel):
    """One event on /v1/stream (SSE event `device`)."""

    device_id: str
    online: bool
    status: str | None
    last_seen: datetime | None
    last_seq: int | None
    power_w: float | None
    soc_pct: float | None
    energy_wh_total: int | None
    revenue_minor_total: int | None
