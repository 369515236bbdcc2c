"""One bridged device: its meter state, signing key and broker session, in the order that
loses nothing: build and sign the reading, publish it and wait for the PUBACK, then persist
the state (and the evidence behind it); only then may the caller acknowledge the hardware."""

from __future__ import annotations

import asyncio
import logging

from gridshare.bridges.meter import MeterState, Sample, advance, reading_fields
from gridshare.bridges.publisher import BrokerLogin, Publishers
from gridshare.bridges.store import BridgedDevice, BridgeStore, Evidence
from gridshare.core.errors import GridshareError
from gridshare.core.payloads import encode_reading
from gridshare.core.settings import Settings
from gridshare.core.tls import CertificateAuthority
from gridshare.gateway.identity import DeviceIdentity, read_identity

log = logging.getLogger(__name__)


class UnknownDevice(GridshareError):
    """A bridge was pointed at a device that is not provisioned here."""


def broker_login(settings: Settings, identity: DeviceIdentity) -> BrokerLogin:
    """The device's broker login, as its identity file gives it: the TLS device listener and
    the CA (files written before they had them: the stack's device listener and CA)."""
    return BrokerLogin(
        identity.mqtt_url or settings.mqtt_device_url,
        identity.mqtt_username,
        identity.mqtt_password,
        identity.ca or CertificateAuthority(settings).ca_pem(),
    )


class BridgedMeter:
    """See module docstring. One reading at a time per device."""

    def __init__(
        self,
        device: BridgedDevice,
        identity: DeviceIdentity,
        state: MeterState | None,
        store: BridgeStore,
        publishers: Publishers,
        login: BrokerLogin,
    ) -> None:
        self.device = device
        self.identity = identity
        self.state = state
        self.store = store
        self.publishers = publishers
        self.login = login
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, settings: Settings, device_id: str, store: BridgeStore, publishers: Publishers
    ) -> BridgedMeter:
        device = await store.device(device_id)
        identity = read_identity(settings, device_id)
        if device is None or identity is None:
            raise UnknownDevice(
                f"device {device_id} is not provisioned (no active database row or no "
                "identity file under the state dir)"
            )
        state = await store.state(device_id)
        return cls(device, identity, state, store, publishers, broker_login(settings, identity))

    async def record(
        self, sample: Sample, evidence: list[Evidence] | tuple = (), soc_pct: float | None = None
    ) -> bool:
        """Publish the reading of `sample` and persist the state; False when the sample is
        not newer than the last acknowledged reading (nothing published)."""
        async with self._lock:
            terms = await self.store.terms(self.device.pool)
            new = advance(self.state, sample, terms.tariff_minor_per_kwh)
            if new is None:
                return False
            power = sample.power_w
            if power is None and self.state is not None:
                seconds = (sample.ts - self.state.last_ts).total_seconds()
                power = sample.energy_step_mwh * 3.6 / seconds if seconds > 0 else 0.0
            fields = reading_fields(
                self.device.device_id, self.device.type, new, terms.currency, power, sample.soc_pct
            )
            payload = encode_reading(fields, self.identity.key_bytes)
            await self.publishers.get(self.login).publish(payload)
            await self.store.save(self.device.device_id, new, list(evidence))
            self.state = new
            return True

    async def online(self) -> bool:
        """Open the device's broker session now (its retained status says `online`)."""
        return await self.publishers.get(self.login).connect()

    async def release(self) -> None:
        await self.publishers.release(self.device.device_id)
