"""Device identities: the secp256k1 signing key and MQTT login of each device.

One file per device, `devices/{device_id}.json` under the state dir, mode 0600 (SPEC §9). The
file is the device's secret; the database and the chain only ever see its address.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

from coincurve import PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from gridshare.core.files import private_dir, write_private
from gridshare.core.payloads import DEVICE_ID_PATTERN, DeviceType
from gridshare.core.settings import Settings
from gridshare.core.signing import address_of
from gridshare.core.stack import cluster
from gridshare.core.tls import CertificateAuthority


class DeviceIdentity(BaseModel):
    """What a device holds: its id, pool, signing key and broker login (SPEC §9 file)."""

    model_config = ConfigDict(frozen=True)

    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    type: DeviceType
    pool: str
    address: str
    private_key: str = Field(pattern=r"^0x[0-9a-f]{64}$")
    mqtt_username: str
    mqtt_password: str
    mqtt_url: str = ""  # the broker's device listener (TLS); empty in files of older versions
    ca: str = ""  # PEM of the CA that signed the broker's certificate

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.private_key[2:])


def broker_endpoint(settings: Settings) -> tuple[str, str]:
    """(device listener URL, CA PEM) that go into every identity file; empty with a
    clustered broker, whose nodes devices reach on its own listeners."""
    if cluster.enabled(settings):
        return "", ""
    return settings.mqtt_device_url, CertificateAuthority(settings).ca_pem()


def new_identity(
    device_id: str,
    device_type: DeviceType,
    pool: str,
    endpoint: tuple[str, str] = ("", ""),
) -> DeviceIdentity:
    """A fresh identity: a random secp256k1 key and a random broker password."""
    key = PrivateKey()
    return DeviceIdentity(
        device_id=device_id,
        type=device_type,
        pool=pool,
        address=address_of(key.public_key),
        private_key="0x" + key.secret.hex(),
        mqtt_username=device_id,
        mqtt_password=new_password(),
        mqtt_url=endpoint[0],
        ca=endpoint[1],
    )


def new_password() -> str:
    return secrets.token_urlsafe(18)


def with_new_key(identity: DeviceIdentity, endpoint: tuple[str, str]) -> DeviceIdentity:
    """The same device with a fresh signing key and broker password (rotation), and the
    broker endpoint of today."""
    key = PrivateKey()
    return identity.model_copy(
        update={
            "address": address_of(key.public_key),
            "private_key": "0x" + key.secret.hex(),
            "mqtt_password": new_password(),
            "mqtt_url": endpoint[0],
            "ca": endpoint[1],
        }
    )


def devices_dir(settings: Settings) -> Path:
    return settings.state_path / "devices"


def identity_path(settings: Settings, device_id: str) -> Path:
    return devices_dir(settings) / f"{device_id}.json"


def write_identity(settings: Settings, identity: DeviceIdentity, suffix: str = "") -> Path:
    """Write the identity file atomically with mode 0600 (the directory is 0700)."""
    return write_identities(settings, [identity], suffix)[0]


def write_identities(
    settings: Settings, identities: list[DeviceIdentity], suffix: str = ""
) -> list[Path]:
    """Write identity files (`{device_id}.json{suffix}`), each atomically with mode 0600."""
    directory = private_dir(devices_dir(settings))
    paths = []
    for identity in identities:
        path = directory / f"{identity.device_id}.json{suffix}"
        write_private(path, identity.model_dump_json(indent=2) + "\n")
        paths.append(path)
    return paths


def read_identity(settings: Settings, device_id: str) -> DeviceIdentity | None:
    try:
        text = identity_path(settings, device_id).read_text()
    except FileNotFoundError:
        return None
    return DeviceIdentity.model_validate_json(text)


def all_identities(settings: Settings) -> list[DeviceIdentity]:
    """Every identity file under the state dir, sorted by device id."""
    directory = devices_dir(settings)
    if not directory.is_dir():
        return []
    return [
        DeviceIdentity.model_validate(json.loads(path.read_text()))
        for path in sorted(directory.glob("*.json"))
    ]


def load_identities(
    settings: Settings, limit: int | None = None, device_type: DeviceType | None = None
) -> list[DeviceIdentity]:
    """Provisioned identities, taken round-robin across pools so that a small `limit` still
    covers every pool (and so every device type)."""
    by_pool: dict[str, list[DeviceIdentity]] = defaultdict(list)
    for identity in all_identities(settings):
        if device_type is None or identity.type is device_type:
            by_pool[identity.pool].append(identity)
    ordered = [
        identity
        for row in zip_longest(*(by_pool[p] for p in sorted(by_pool, key=pool_sort_key)))
        for identity in row
        if identity is not None
    ]
    return ordered if limit is None else ordered[:limit]


def pool_sort_key(pool: str) -> tuple[int, str]:
    """`charging-pile-2` before `charging-pile-10`; non-numbered (ephemeral) pools last."""
    stem, _, number = pool.rpartition("-")
    return (int(number), stem) if number.isdigit() else (1 << 30, pool)
