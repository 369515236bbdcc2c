"""`gridshare audit`: re-check an attested epoch from the public API and the chain alone.

No database and no state dir: the evidence (leaves, the signed readings each leaf is derived
from, the previous epoch's leaves) comes from the API and is trusted for nothing; the chain
gives the roots, the totals and each device's keys. For every device the auditor

* checks each determining reading: the bytes the device signed say what the stored row says,
  and the signature recovers to the key the device held on-chain at the reading's time;
* recomputes the leaf's meter fields by the meter rule (gridshare.core.meter_rule) from the
  signed values, starting from the previous epoch's leaf: energyWh, revenueMinor, sessions,
  firstSeq, lastSeq, the adjustments and the end values (an excluded device: zero figures and
  its start values carried);
* checks the leaf encodes to the hash served with it.

Then it rebuilds both epochs' Merkle roots from the leaves and compares them with the roots
the AttestationRegistry holds, and compares the on-chain totals with the sums of the leaves.
`readings`, `uptimeSeconds` and `meterResets` count every reading of the period and are not
recomputed (the readings endpoint serves them all for anyone who wants to).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
import typer
from web3 import Web3

from gridshare.core import meter_rule as rule
from gridshare.core.chain.artifacts import load_artifact
from gridshare.core.chain.device_keys import DeviceKeys
from gridshare.core.chain.merkle import MerkleTree, verify
from gridshare.core.errors import GridshareError
from gridshare.core.ids import text_id
from gridshare.core.settings import get_settings
from gridshare.oracle.leaves import LEAF_TYPES, DeviceLeaf
from gridshare.oracle.provenance import StoredReading, check_reading

PAGE = 1000
ROLE_SLOTS = {"first": "first", "before_start": "s0", "from_start": "s1"}
ROLE_SLOTS |= {"before_end": "e0", "from_end": "e1"}
CHECKED = (
    "energy_wh",
    "revenue_minor",
    "sessions",
    "first_seq",
    "last_seq",
    "adjustment_energy_wh",
    "adjustment_revenue_minor",
    "end_energy_wh",
    "end_revenue_minor",
    "end_sessions",
)


class AuditError(GridshareError):
    """The audit cannot run (API or chain unreachable, unknown epoch)."""


@dataclass
class DeviceResult:
    device_id: str
    problems: list[str] = field(default_factory=list)
    signatures: int = 0  # determining readings whose signature verified
    exclusion: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class AuditReport:
    pool: str
    epoch: int
    registry: str
    device_registry: str
    devices: list[DeviceResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # epoch-level

    @property
    def ok(self) -> bool:
        return not self.problems and all(d.ok for d in self.devices)

    def as_json(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "epoch": self.epoch,
            "ok": self.ok,
            "attestation_registry": self.registry,
            "device_registry": self.device_registry,
            "problems": self.problems,
            "devices": [
                {
                    "device_id": d.device_id,
                    "ok": d.ok,
                    "signatures_verified": d.signatures,
                    "excluded": d.exclusion or None,
                    "problems": d.problems,
                }
                for d in self.devices
            ],
        }


def _leaf(pool: str, epoch: int, device_id: str, values: list[str]) -> DeviceLeaf:
    ints = [int(v, 16) if v.startswith("0x") else int(v) for v in values]
    if len(ints) != len(LEAF_TYPES):
        raise ValueError(f"{len(ints)} leaf values, expected {len(LEAF_TYPES)}")
    leaf = DeviceLeaf(pool, ints[1], device_id, *ints[3:])
    if (
        ints[1] != epoch
        or leaf.values()[0] != text_id(pool)
        or leaf.values()[2] != text_id(device_id)
    ):
        raise ValueError("the leaf names another pool, epoch or device")
    return leaf


def _reading(device_id: str, untrusted: dict[str, Any]) -> tuple[StoredReading, rule.Reading]:
    """The served reading as stored, and as signed (the values the rule is applied to)."""
    stored = untrusted["stored"]
    signed_bytes = str(untrusted["payload"] or "").encode("utf-8")
    as_stored = StoredReading(
        device_id,
        datetime.fromisoformat(stored["time"]),
        int(untrusted["seq"]),
        int(stored["energy_wh_total"]),
        int(stored["revenue_minor_total"]),
        int(stored["sessions_total"] or 0),
        signed_bytes,
        bytes.fromhex(str(untrusted["sig"] or "0x").removeprefix("0x")),
    )
    try:
        signed = orjson.loads(signed_bytes)
        point = rule.Reading(
            datetime.fromisoformat(signed["ts"]),
            int(signed["seq"]),
            int(signed["energy_wh_total"]),
            int(signed["revenue_minor_total"]),
            int(signed.get("sessions_total") or 0),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        point = rule.Reading(
            as_stored.time, as_stored.seq, as_stored.energy, as_stored.revenue, as_stored.sessions
        )
    return as_stored, point


def audit_device(
    pool: str,
    epoch: int,
    start: datetime,
    end: datetime,
    untrusted_item: dict[str, Any],
    keys: DeviceKeys,
) -> tuple[DeviceResult, DeviceLeaf | None, DeviceLeaf | None]:
    """One device's checks; (result, its leaf, its previous leaf) as served."""
    device_id = str(untrusted_item["device_id"])
    result = DeviceResult(device_id)
    try:
        leaf = _leaf(pool, epoch, device_id, untrusted_item["values"])
        previous = None
        if untrusted_item.get("previous_values"):
            previous = _leaf(pool, epoch - 1, device_id, untrusted_item["previous_values"])
    except (ValueError, KeyError, TypeError) as exc:
        result.problems.append(f"leaf: {exc}")
        return result, None, None
    if "0x" + leaf.leaf_hash().hex() != untrusted_item["leaf"]:
        result.problems.append("leaf: its fields do not hash to the leaf served")
    result.exclusion = leaf.exclusion
    spans = keys.spans(device_id)
    slots: dict[str, rule.Reading] = {}
    failures = []
    for untrusted_reading in untrusted_item["readings"]:
        stored, point = _reading(device_id, untrusted_reading)
        failed = check_reading(stored, spans)
        if failed is None:
            result.signatures += 1
        else:
            failures.append(f"{failed[0]}: {failed[1]}")
        for role in untrusted_reading["roles"]:
            slots[ROLE_SLOTS[role]] = point
    start_values = (
        rule.Meters(previous.end_energy_wh, previous.end_revenue_minor, previous.end_sessions)
        if previous is not None and previous.carries
        else None
    )
    if leaf.excluded:
        carried = start_values or rule.ZERO
        expected: dict[str, int] = dict.fromkeys(CHECKED, 0)
        expected |= {
            "end_energy_wh": carried.energy,
            "end_revenue_minor": carried.revenue,
            "end_sessions": carried.sessions,
        }
    else:
        result.problems.extend(failures)
        bounds = rule.Bounds(*(slots.get(k) for k in ("s0", "s1", "e0", "e1", "first")))
        figures = rule.period_figures(bounds, start, end, start_values)
        if figures is None:
            result.problems.append("leaf: the readings give no leaf for this period")
            return result, leaf, previous
        expected = {
            "energy_wh": figures.energy,
            "revenue_minor": figures.revenue,
            "sessions": figures.sessions,
            "first_seq": figures.first_seq,
            "last_seq": figures.last_seq,
            "adjustment_energy_wh": figures.adjustment_energy,
            "adjustment_revenue_minor": figures.adjustment_revenue,
            "end_energy_wh": figures.end.energy,
            "end_revenue_minor": figures.end.revenue,
            "end_sessions": figures.end.sessions,
        }
    for name in CHECKED:
        if getattr(leaf, name) != expected[name]:
            result.problems.append(
                f"{_camel(name)}: leaf {getattr(leaf, name)}, recomputed {expected[name]}"
            )
    return result, leaf, previous


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class Chain:
    """The chain reads of an audit."""

    def __init__(self, rpc_url: str, untrusted_chain: dict[str, Any]) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
        try:
            chain_id = self.w3.eth.chain_id
        except Exception as exc:
            raise AuditError(f"chain at {rpc_url} unreachable: {exc}") from exc
        if chain_id != untrusted_chain["chain_id"]:
            raise AuditError(
                f"the API's chain is {untrusted_chain['chain_id']}, {rpc_url} is {chain_id}"
            )
        self.registry_address = str(untrusted_chain["attestation_registry"])
        self.device_registry = str(untrusted_chain["device_registry"])
        abi = load_artifact("AttestationRegistry").abi
        self.registry = self.w3.eth.contract(
            address=Web3.to_checksum_address(self.registry_address), abi=abi
        )
        self.keys = DeviceKeys(
            self.w3, self.device_registry, int(untrusted_chain["deployment_block"])
        )
        self.keys.refresh()

    def attestation(self, pool: str, epoch: int) -> dict[str, Any] | None:
        """The registry's record of an epoch by field name (None: not attested)."""
        pool_id = text_id(pool)
        if int(self.registry.functions.latestEpoch(pool_id).call()) < epoch:
            return None
        fn = self.registry.get_function_by_name("attestation")
        names = [c["name"] for c in fn.abi["outputs"][0]["components"]]
        return dict(zip(names, fn(pool_id, epoch).call(), strict=True))


def _pages(client: httpx.Client, pool: str, epoch: int) -> Iterator[dict[str, Any]]:
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": PAGE}
        if cursor:
            params["cursor"] = cursor
        response = client.get(f"/v1/pools/{pool}/attestations/{epoch}/evidence", params=params)
        if response.status_code != 200:
            raise AuditError(f"API: {response.status_code} {response.text[:200]}")
        page = response.json()
        yield page
        cursor = page.get("next_cursor")
        if not cursor:
            return


def audit_epoch(
    api_url: str, rpc_url: str, pool: str, epoch: int, device: str | None = None
) -> AuditReport:
    """Every check of the module docstring; for one device when `device` is given."""
    with httpx.Client(base_url=api_url, timeout=120) as client:
        try:
            if device is None:
                pages = list(_pages(client, pool, epoch))
            else:
                pages = [_device_page(client, pool, epoch, device)]
        except httpx.HTTPError as exc:
            raise AuditError(f"API at {api_url} unreachable: {exc}") from exc
    head = pages[0]
    if head.get("chain") is None:
        raise AuditError("the API does not say which contracts it reports on")
    chain = Chain(rpc_url, head["chain"])
    report = AuditReport(pool, epoch, chain.registry_address, chain.device_registry)
    start = datetime.fromisoformat(head["period_start"])
    end = datetime.fromisoformat(head["period_end"])
    leaves: list[DeviceLeaf] = []
    previous: list[DeviceLeaf] = []
    for page in pages:
        for item in page["items"]:
            result, leaf, prev = audit_device(pool, epoch, start, end, item, chain.keys)
            report.devices.append(result)
            leaves += [leaf] if leaf else []
            previous += [prev] if prev else []
    onchain = chain.attestation(pool, epoch)
    if onchain is None:
        report.problems.append(f"epoch {epoch} is not attested on-chain")
        return report
    if device is None:
        _check_root(report, "merkle root", leaves, bytes(onchain["leavesRoot"]))
        _check_totals(report, leaves, onchain, start, end)
        if epoch > 1:
            before = chain.attestation(pool, epoch - 1)
            root = bytes(before["leavesRoot"]) if before else None
            _check_root(report, f"epoch {epoch - 1} merkle root", previous, root)
    else:
        _check_proofs(report, head, chain, pool, epoch, bytes(onchain["leavesRoot"]))
    return report


def _device_page(client: httpx.Client, pool: str, epoch: int, device: str) -> dict[str, Any]:
    """The device endpoint's answer in the shape of an evidence page."""
    response = client.get(f"/v1/pools/{pool}/attestations/{epoch}/evidence/{device}")
    if response.status_code != 200:
        raise AuditError(f"API: {response.status_code} {response.text[:200]}")
    one = response.json()
    previous = one.get("previous")
    one["items"] = [
        {
            "device_id": device,
            "leaf": one["leaf"]["leaf"],
            "values": one["leaf"]["fields"]["values"],
            "previous_values": previous["fields"]["values"] if previous else None,
            "exclusion": one.get("exclusion"),
            "readings": one["readings"],
        }
    ]
    return one


def _check_root(
    report: AuditReport, what: str, leaves: list[DeviceLeaf], root: bytes | None
) -> None:
    if root is None:
        report.problems.append(f"{what}: not on-chain")
        return
    hashes = [leaf.leaf_hash() for leaf in leaves]
    rebuilt = MerkleTree(hashes).root if hashes else b"\x00" * 32
    if rebuilt != root:
        report.problems.append(f"{what}: leaves give 0x{rebuilt.hex()}, on-chain 0x{root.hex()}")


def _check_totals(
    report: AuditReport,
    leaves: list[DeviceLeaf],
    onchain: dict[str, Any],
    start: datetime,
    end: datetime,
) -> None:
    sums = {
        "energyWh": sum(leaf.energy_wh for leaf in leaves),
        "revenueMinor": sum(leaf.revenue_minor for leaf in leaves),
        "deviceCount": len(leaves),
        "periodStart": int(start.timestamp()),
        "periodEnd": int(end.timestamp()),
    }
    for name, value in sums.items():
        if name in onchain and int(onchain[name]) != value:
            report.problems.append(f"{name}: on-chain {onchain[name]}, from the leaves {value}")


def _check_proofs(
    report: AuditReport, one: dict[str, Any], chain: Chain, pool: str, epoch: int, root: bytes
) -> None:
    """With one device: its leaf and its previous leaf proven against the on-chain roots."""
    pairs = [("leaf", one["leaf"], root)]
    if one.get("previous"):
        before = chain.attestation(pool, epoch - 1)
        pairs.append(
            ("previous leaf", one["previous"], bytes(before["leavesRoot"]) if before else b"")
        )
    for what, record, onchain_root in pairs:
        proof = [bytes.fromhex(p.removeprefix("0x")) for p in record["proof"]]
        if not verify(proof, onchain_root, bytes.fromhex(record["leaf"].removeprefix("0x"))):
            report.devices[0].problems.append(f"{what}: its proof does not reach the on-chain root")


def _print(report: AuditReport) -> None:
    typer.echo(
        f"{report.pool} epoch {report.epoch}: AttestationRegistry {report.registry}, "
        f"DeviceRegistry {report.device_registry}"
    )
    for d in report.devices:
        note = f" (excluded: {d.exclusion})" if d.exclusion else ""
        if d.ok:
            typer.echo(f"  {d.device_id}: ok, {d.signatures} signatures verified{note}")
        for problem in d.problems:
            typer.echo(f"  {d.device_id}: {problem}{note}")
    for problem in report.problems:
        typer.echo(f"  epoch: {problem}")
    bad = sum(1 for d in report.devices if not d.ok)
    typer.echo(
        "all checks hold"
        if report.ok
        else f"FAILED: {bad} devices, {len(report.problems)} epoch checks"
    )


def audit_command(
    pool: str = typer.Option(..., "--pool", help="e.g. pv-plant-1"),
    epoch: int = typer.Option(..., "--epoch", min=1),
    device: str | None = typer.Option(None, "--device", help="audit one device only"),
    api: str | None = typer.Option(None, "--api", help="API base URL (default: the local API)"),
    rpc: str | None = typer.Option(None, "--rpc", help="chain RPC URL (default GRIDSHARE_RPC_URL)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Re-check an attested epoch from the public API and the chain; exit 1 if anything differs."""
    settings = get_settings()
    try:
        report = audit_epoch(
            api or f"http://127.0.0.1:{settings.api_port}",
            rpc or settings.rpc_url,
            pool,
            epoch,
            device,
        )
    except (AuditError, KeyError, ValueError) as exc:
        typer.echo(f"audit failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        _print(report)
    raise typer.Exit(0 if report.ok else 1)
