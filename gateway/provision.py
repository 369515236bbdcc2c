"""Provisioning: pools of devices with keys, database rows, broker logins and chain records.

Everything is driven by what already exists, so provisioning is idempotent and resumable:
pools are named `{type}-{n}` in a fixed cycle (charging-pile-1, pv-plant-1, battery-swap-1,
charging-pile-2, …); a second run only adds what is missing (new pools, devices up to
`per_pool` in existing pools, broker logins, chain records). Order of the steps: identity
files, database rows, broker logins (one SIGHUP for the whole batch), then the chain.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg

from gridshare.core import db
from gridshare.core.errors import GridshareError
from gridshare.core.ids import hex_id
from gridshare.core.payloads import DeviceType
from gridshare.core.settings import Settings
from gridshare.gateway import onchain
from gridshare.gateway.broker import wait_for_login
from gridshare.gateway.cluster_auth import device_logins
from gridshare.gateway.identity import (
    DeviceIdentity,
    broker_endpoint,
    identity_path,
    new_identity,
    read_identity,
    with_new_key,
    write_identities,
    write_identity,
)

TYPE_CYCLE = (DeviceType.CHARGING_PILE, DeviceType.PV_PLANT, DeviceType.BATTERY_SWAP)
NUMBERED_ID = re.compile(r"^(cp|pv|bs)-(\d{6,})$")
log = logging.getLogger(__name__)


class ProvisionError(GridshareError):
    """Provisioning found state it cannot reconcile on its own."""


@dataclass
class ProvisionResult:
    """What one provisioning run found and did."""

    pools: list[str]
    pools_created: list[str] = field(default_factory=list)
    devices_created: list[str] = field(default_factory=list)
    devices_total: int = 0
    broker_logins_added: int = 0
    chain: onchain.ChainReport | None = None
    seconds: float = 0.0


def planned_pools(
    pools: int, device_type: DeviceType | None = None
) -> list[tuple[str, DeviceType]]:
    """The first `pools` pools: the type cycle, or pools 1..N of one type."""
    plan = []
    for index in range(pools):
        kind = device_type or TYPE_CYCLE[index % len(TYPE_CYCLE)]
        number = index + 1 if device_type else index // len(TYPE_CYCLE) + 1
        plan.append((f"{kind.pool_stem}-{number}", kind))
    return plan


def provision(
    settings: Settings,
    pools: int,
    per_pool: int,
    device_type: DeviceType | None = None,
    share_bps: int | None = None,
    chain: bool = True,
    rated_power_w: int | None = None,
    max_tariff_minor_per_kwh: int | None = None,
) -> ProvisionResult:
    """Make sure the first `pools` pools exist with at least `per_pool` devices each.

    Devices created now get `rated_power_w` and pools created now
    `max_tariff_minor_per_kwh`, each their type's default when not given (the bounds ingest
    checks readings against).

    With `chain=False` the pools and devices are not created on-chain (yet): a later run with
    the chain step completes them, since that step works from the rows still lacking a token
    address or a registration transaction.
    """
    if pools < 1 or per_pool < 0:
        raise ProvisionError("need --pools >= 1 and --per-pool >= 0")
    started = time.monotonic()
    share = settings.pool_share_bps if share_bps is None else share_bps
    plan = planned_pools(pools, device_type)
    result = ProvisionResult(pools=[name for name, _ in plan])
    with db.connect(settings, autocommit=True) as conn:
        existing_pools = _existing_pools(conn)
        members = _members(conn)
        existing, created = _identities_for(settings, plan, per_pool, members)
        result.pools_created = [name for name, _ in plan if name not in existing_pools]
        result.devices_created = [i.device_id for i in created]
        with conn.transaction():
            _insert_pools(conn, plan, share, False, existing_pools, max_tariff_minor_per_kwh)
            _insert_devices(conn, created, ephemeral=False, rated_power_w=rated_power_w)
            if created:
                conn.execute("SELECT pg_notify(%s, '*')", (db.DEVICES_CHANNEL,))
        revoked = _revoked(conn)
        newest = _ensure_logins(settings, [d for d in existing if d not in revoked], created)
        result.broker_logins_added = len(newest)
        result.devices_total = len(existing) + len(created)
        if chain:
            result.chain = onchain.register(settings, conn, result.pools)
    if newest:
        wait_for_login(settings, newest[-1].mqtt_username, newest[-1].mqtt_password)
    result.seconds = round(time.monotonic() - started, 3)
    log.info(
        "provisioned",
        extra={
            "fields": {
                "pools": len(result.pools),
                "pools_created": len(result.pools_created),
                "devices_created": len(result.devices_created),
                "devices_total": result.devices_total,
                "seconds": result.seconds,
            }
        },
    )
    return result


def provision_ephemeral(
    settings: Settings,
    count: int,
    device_type: DeviceType | None = None,
    tag: str | None = None,
) -> list[DeviceIdentity]:
    """`count` throwaway devices, held in memory only (no identity files, no chain), but with
    database rows and broker logins so that ingest accepts their telemetry.

    Ids carry a run tag (`cp-e1a2b3-000001`) so repeated runs never collide; the devices sit in
    one `{type}-ephemeral` pool per type, marked ephemeral in the database.
    """
    tag = tag or secrets.token_hex(3)
    endpoint = broker_endpoint(settings)
    identities = []
    for index in range(count):
        kind = device_type or TYPE_CYCLE[index % len(TYPE_CYCLE)]
        device_id = f"{kind.prefix}-e{tag}-{index + 1:06d}"
        identities.append(new_identity(device_id, kind, f"{kind.pool_stem}-ephemeral", endpoint))
    kinds = sorted({i.type for i in identities}, key=TYPE_CYCLE.index)
    plan = [(f"{kind.pool_stem}-ephemeral", kind) for kind in kinds]
    with db.connect(settings, autocommit=True) as conn, conn.transaction():
        _insert_pools(conn, plan, settings.pool_share_bps, ephemeral=True, skip=set())
        _insert_devices(conn, identities, ephemeral=True)
        conn.execute("SELECT pg_notify(%s, '*')", (db.DEVICES_CHANNEL,))
    device_logins(settings).add_users({i.mqtt_username: i.mqtt_password for i in identities})
    if identities:
        wait_for_login(settings, identities[-1].mqtt_username, identities[-1].mqtt_password)
    log.info("ephemeral devices", extra={"fields": {"devices": count, "tag": tag}})
    return identities


def rotate_key(settings: Settings, device_id: str) -> DeviceIdentity:
    """Give a device a new signing key and broker password: on-chain first (when registered
    there), then the database, then the broker login, then its identity file. The pending
    identity is kept in `{id}.json.new` until the end, so an interrupted rotation resumes with
    the same key instead of losing it. The old password stops working at once; the device's
    current session is disconnected at the broker's reload."""
    current = read_identity(settings, device_id)
    if current is None:
        raise ProvisionError(
            f"device {device_id}: no identity file {identity_path(settings, device_id)}"
        )
    pending_path = identity_path(settings, device_id).with_suffix(".json.new")
    if pending_path.exists():
        rotated = DeviceIdentity.model_validate_json(pending_path.read_text())
    else:
        rotated = with_new_key(current, broker_endpoint(settings))
        write_identity(settings, rotated, suffix=".new")
    with db.connect(settings, autocommit=True) as conn:
        registered = _registered(conn, device_id, "; provision it first")
        if registered:
            onchain.rotate_key(settings, device_id, rotated.address)
        _update_device(conn, device_id, "address = %s", rotated.address)
    auth = device_logins(settings)
    auth.remove_users([current.mqtt_username])  # ends the session under the old password
    auth.add_users({rotated.mqtt_username: rotated.mqtt_password})
    wait_for_login(settings, rotated.mqtt_username, rotated.mqtt_password)
    pending_path.replace(identity_path(settings, device_id))
    log.info(
        "device key rotated",
        extra={"fields": {"device_id": device_id, "address": rotated.address}},
    )
    return rotated


def revoke(settings: Settings, device_id: str) -> bool:
    """Take a device out of service for good: its broker login goes (and with it its
    session), the database marks it inactive (ingest, LISTENing, refuses its messages from
    then on), and the DeviceRegistry deactivates it. Idempotent; True if the device was
    deactivated on-chain by this call. The identity file stays, for the record."""
    with db.connect(settings, autocommit=True) as conn:
        registered = _registered(conn, device_id)
        device_logins(settings).remove_users([device_id])
        _update_device(conn, device_id, "active = %s", False)
    on_chain = registered and onchain.deactivate(settings, device_id)
    log.info("device revoked", extra={"fields": {"device_id": device_id, "chain": on_chain}})
    return on_chain


def _registered(conn: psycopg.Connection, device_id: str, hint: str = "") -> bool:
    """Whether the device is registered on-chain; a one-line error if it has no row."""
    row = conn.execute(
        "SELECT registered_tx FROM devices WHERE device_id = %s", (device_id,)
    ).fetchone()
    if row is None:
        raise ProvisionError(f"device {device_id}: not in the database{hint}")
    return row[0] is not None


def _update_device(
    conn: psycopg.Connection, device_id: str, assignment: str, value: object
) -> None:
    """Change a device row and tell the ingest workers (they LISTEN) in one transaction."""
    with conn.transaction():
        conn.execute(
            f"UPDATE devices SET {assignment}, updated_at = now() WHERE device_id = %s",
            (value, device_id),
        )
        conn.execute("SELECT pg_notify(%s, %s)", (db.DEVICES_CHANNEL, device_id))


def _existing_pools(conn: psycopg.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM pools")}


def _revoked(conn: psycopg.Connection) -> set[str]:
    """Devices taken out of service: they get no broker login back."""
    return {row[0] for row in conn.execute("SELECT device_id FROM devices WHERE NOT active")}


def _members(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Non-ephemeral device ids by pool, in id order."""
    members: dict[str, list[str]] = defaultdict(list)
    for device_id, pool in conn.execute(
        "SELECT device_id, pool FROM devices WHERE NOT ephemeral ORDER BY device_id"
    ):
        members[pool].append(device_id)
    return members


def _identities_for(
    settings: Settings,
    plan: list[tuple[str, DeviceType]],
    per_pool: int,
    members: dict[str, list[str]],
) -> tuple[list[str], list[DeviceIdentity]]:
    """(ids of the planned pools' devices already in the database, identities to add).

    Identity files left by an interrupted run (a file, no row) are reused before new ids are
    numbered, so an interruption never burns ids or leaves keys nobody registered. Files of
    devices already in the database are not read (10,000 files take seconds).
    """
    directory = identity_path(settings, "x").parent
    endpoint = broker_endpoint(settings)
    on_disk = {p.stem for p in directory.glob("*.json")} if directory.is_dir() else set()
    in_db = {device_id for ids in members.values() for device_id in ids}
    orphans: dict[str, list[DeviceIdentity]] = defaultdict(list)
    for device_id in sorted(on_disk - in_db):
        identity = read_identity(settings, device_id)
        if identity is not None:
            orphans[identity.pool].append(identity)
    next_number = _next_numbers(in_db | on_disk)
    existing: list[str] = []
    created: list[DeviceIdentity] = []
    for pool, kind in plan:
        pool_ids = members.get(pool, [])
        lost = [device_id for device_id in pool_ids if device_id not in on_disk]
        if lost:
            raise ProvisionError(
                f"device {lost[0]} of {pool} has no identity file under {directory}; "
                "restore it from a backup, or give the device a new identity by hand"
            )
        existing += pool_ids
        missing = max(0, per_pool - len(pool_ids))
        reused = orphans.get(pool, [])[:missing]
        fresh = []
        for _ in range(missing - len(reused)):
            device_id = f"{kind.prefix}-{next_number[kind.prefix]:06d}"
            next_number[kind.prefix] += 1
            fresh.append(new_identity(device_id, kind, pool, endpoint))
        write_identities(settings, fresh)
        created += reused + fresh
    return existing, created


def _next_numbers(device_ids: set[str]) -> dict[str, int]:
    highest: dict[str, int] = {kind.prefix: 0 for kind in TYPE_CYCLE}
    for device_id in device_ids:
        match = NUMBERED_ID.match(device_id)
        if match:
            prefix, number = match.group(1), int(match.group(2))
            highest[prefix] = max(highest[prefix], number)
    return {prefix: number + 1 for prefix, number in highest.items()}


def _insert_pools(
    conn: psycopg.Connection,
    plan: list[tuple[str, DeviceType]],
    share_bps: int,
    ephemeral: bool,
    skip: set[str],
    max_tariff_minor_per_kwh: int | None = None,
) -> None:
    """Insert the planned pools not in `skip`; the maximum tariff NULL takes the type's
    default (a trigger, migration 0042)."""
    rows = [
        (name, hex_id(name), kind.value, share_bps, ephemeral, max_tariff_minor_per_kwh)
        for name, kind in plan
        if name not in skip
    ]
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO pools (name, pool_id, device_type, share_bps, ephemeral,"
                " max_tariff_minor_per_kwh)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                rows,
            )


def _insert_devices(
    conn: psycopg.Connection,
    identities: list[DeviceIdentity],
    ephemeral: bool,
    rated_power_w: int | None = None,
) -> None:
    """COPY into a staging table, then insert what is new (devices and their state rows).
    A rated power of None takes the type's default (a trigger, migration 0042)."""
    if not identities:
        return
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS devices_new"
        " (device_id text, type text, pool text, address text) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur:
        with cur.copy("COPY devices_new (device_id, type, pool, address) FROM STDIN") as copy:
            for identity in identities:
                copy.write_row(
                    (identity.device_id, identity.type.value, identity.pool, identity.address)
                )
        cur.execute(
            "INSERT INTO devices (device_id, type, pool, address, ephemeral, rated_power_w)"
            " SELECT device_id, type, pool, address, %s, %s::bigint FROM devices_new"
            " ON CONFLICT (device_id) DO NOTHING",
            (ephemeral, rated_power_w),
        )
        cur.execute(
            "INSERT INTO device_state (device_id) SELECT device_id FROM devices_new"
            " ON CONFLICT (device_id) DO NOTHING"
        )


def _ensure_logins(
    settings: Settings, existing: list[str], created: list[DeviceIdentity]
) -> list[DeviceIdentity]:
    """Add the broker logins that are missing, in one write and one SIGHUP; the identities
    whose login was added. (Existing devices' files are read only when their login is
    missing.)"""
    auth = device_logins(settings)
    present = auth.usernames()
    missing = [i for i in created if i.mqtt_username not in present]
    for device_id in existing:
        if device_id not in present:
            identity = read_identity(settings, device_id)
            if identity is not None and identity.mqtt_username not in present:
                missing.append(identity)
    if missing:
        auth.add_users({i.mqtt_username: i.mqtt_password for i in missing})
    return missing
