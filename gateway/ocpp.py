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
    DEVICES_CHANGED_CHANNEL,
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
    with db.connect(settings, autocommit=True) as conn:
        row = conn.execute("SELECT device_type FROM pools WHERE name = %s", (pool,)).fetchone()
        if row is None or row[0] != DeviceType.CHARGING_PILE.value:
            raise ProvisionError(
                f"pool {pool}: no charging-pile pool of that name; create it with "
                "`gridshare devices provision --type charging_pile`"
            )
        current = conn.execute(
            "SELECT pool FROM devices WHERE device_id = %s", (device_id,)
        ).fetchone()
        if current is not None and current[0] != pool:
            raise ProvisionError(f"charger {charger_id} already feeds pool {current[0]}")
        identity = read_identity(settings, device_id)
        if identity is None:
            if current is not None:
                raise ProvisionError(f"device {device_id} has no identity file; restore it")
            identity = new_identity(device_id, DeviceType.CHARGING_PILE, pool)
            write_identity(settings, identity)
        with conn.transaction():
            _insert_devices(conn, [identity], ephemeral=False)
            conn.execute(
                "INSERT INTO ocpp_chargers (charger_id, device_id, password_hash)"
                " VALUES (%s, %s, %s) ON CONFLICT (charger_id) DO UPDATE"
                " SET password_hash = excluded.password_hash, updated_at = now()",
                (charger_id, device_id, hash_password(password)),
            )
            conn.execute("SELECT pg_notify(%s, %s)", (DEVICES_CHANGED_CHANNEL, device_id))
        added = _ensure_logins(settings, [], [identity])
        if chain:
            onchain.register(settings, conn, [pool])
    if added:
        wait_for_login(settings, identity.mqtt_username, identity.mqtt_password)
    log.info(
        "ocpp charger provisioned",
        extra={"fields": {"charger_id": charger_id, "device_id": device_id, "pool": pool}},
    )
    return ProvisionedCharger(charger_id, device_id, pool, password, current is None)


def set_tariff(settings: Settings, pool: str, minor_per_kwh: int | None) -> None:
    """Set (or with None clear) the pool's tariff used by the bridges for revenue."""
    with db.connect(settings, autocommit=True) as conn:
        updated = conn.execute(
            "UPDATE pools SET tariff_minor_per_kwh = %s WHERE name = %s", (minor_per_kwh, pool)
        ).rowcount
    if not updated:
        raise ProvisionError(f"pool {pool}: no such pool")
