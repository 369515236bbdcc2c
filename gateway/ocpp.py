"""Provisioning for real hardware: OCPP chargers as `cp-…` devices, and pool tariffs.

A charger gets a device like any other (signing key and broker login in its identity file,
database row, on-chain registration); the bridge signs and publishes as that device. The
charger's own secret is its OCPP password: a random 24-character token shown once, stored
only as a salted PBKDF2 hash (the broker's `$7$` format). The token carries 144 random bits,
so no stretching beyond that is needed to make guessing hopeless.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

from gridshare.core import db
from gridshare.core.broker_auth import hash_password
from gridshare.core.payloads import DeviceType
from gridshare.core.settings import Settings
from gridshare.gateway import onchain
from gridshare.gateway.broker import wait_for_login
from gridshare.gateway.identity import new_identity, read_identity, write_identity
from gridshare.gateway.provision import (
    ProvisionError,
    _ensure_logins,
    _insert_devices,
)

CHARGER_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProvisionedCharger:
    charger_id: str
    device_id: str
    pool: str
    password: str
    created: bool


def charger_device_id(charger_id: str) -> str:
    """The device a charger feeds: `cp-ocpp-{charger_id}`."""
    return f"cp-ocpp-{charger_id}"


def verify_password(untrusted_password: str, stored: str) -> bool:
    """True if the password matches a `$7$iterations$salt$hash` entry."""
    try:
        salt = base64.b64decode(stored.split("$")[3])
    except (IndexError, ValueError):
        return False
    return hmac.compare_digest(hash_password(untrusted_password, salt), stored)


def provision_ocpp(
    settings: Settings, pool: str, charger_id: str, chain: bool = True
) -> ProvisionedCharger:
    """Create (or, when it exists, give a new password to) the charger's device; the
    password to configure in the charger is returned, never stored."""
    if not CHARGER_ID.match(charger_id):
        raise ProvisionError(f"charger id {charger_id!r}: use 1-48 of A-Z a-z 0-9 _ -")
    device_id = charger_device_id(charger_id)
    password = secrets.token_urlsafe(18)
    created = provision_bridged(
        settings,
        pool,
        device_id,
        DeviceType.CHARGING_PILE,
        chain,
        charger=(charger_id, hash_password(password)),
    )
    log.info(
        "ocpp charger provisioned",
        extra={"fields": {"charger_id": charger_id, "device_id": device_id, "pool": pool}},
    )
    return ProvisionedCharger(charger_id, device_id, pool, password, created)


def provision_bridged(
    settings: Settings,
    pool: str,
    device_id: str,
    kind: DeviceType,
    chain: bool = True,
    charger: tuple[str, str] | None = None,
) -> bool:
    """A device that a bridge feeds (key, row, broker login, chain), kept out of any
    simulator; with `charger` (id, password hash) also its OCPP login. True if new."""
    return provision_bridged_many(settings, pool, kind, [(device_id, charger)], chain)[0]


def provision_bridged_many(
    settings: Settings,
    pool: str,
    kind: DeviceType,
    devices: list[tuple[str, tuple[str, str] | None]],
    chain: bool = True,
) -> list[bool]:
    """`provision_bridged` for many devices of one pool: one transaction, one broker
    reload, one chain step. For each device, True if it is new."""
    with db.connect(settings, autocommit=True) as conn:
        row = conn.execute("SELECT device_type FROM pools WHERE name = %s", (pool,)).fetchone()
        if row is None or row[0] != kind.value:
            raise ProvisionError(
                f"pool {pool}: no {kind.pool_stem} pool of that name; create it with "
                f"`gridshare devices provision --type {kind.value}`"
            )
        ids = [device_id for device_id, _ in devices]
        current = dict(
            conn.execute(
                "SELECT device_id, pool FROM devices WHERE device_id = ANY(%s)", (ids,)
            ).fetchall()
        )
        identities = []
        for device_id in ids:
            if current.get(device_id, pool) != pool:
                raise ProvisionError(
                    f"device {device_id} already belongs to pool {current[device_id]}"
                )
            identity = read_identity(settings, device_id)
            if identity is None:
                if device_id in current:
                    raise ProvisionError(f"device {device_id} has no identity file; restore it")
                identity = new_identity(device_id, kind, pool)
                write_identity(settings, identity)
            identities.append(identity)
        chargers = [(c[0], d, c[1]) for d, c in devices if c is not None]
        with conn.transaction():
            _insert_devices(conn, identities, ephemeral=False)
            if chargers:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO ocpp_chargers (charger_id, device_id, password_hash)"
                        " VALUES (%s, %s, %s) ON CONFLICT (charger_id) DO UPDATE"
                        " SET password_hash = excluded.password_hash, updated_at = now()",
                        chargers,
                    )
            conn.execute("SELECT pg_notify(%s, '*')", (db.DEVICES_CHANNEL,))
        added = _ensure_logins(settings, [], identities)
        if chain:
            onchain.register(settings, conn, [pool])
    if added:
        wait_for_login(settings, added[-1].mqtt_username, added[-1].mqtt_password)
    return [device_id not in current for device_id in ids]


def set_tariff(settings: Settings, pool: str, minor_per_kwh: int | None) -> None:
    """Set (or with None clear) the pool's tariff used by the bridges for revenue."""
    with db.connect(settings, autocommit=True) as conn:
        updated = conn.execute(
            "UPDATE pools SET tariff_minor_per_kwh = %s WHERE name = %s", (minor_per_kwh, pool)
        ).rowcount
    if not updated:
        raise ProvisionError(f"pool {pool}: no such pool")
