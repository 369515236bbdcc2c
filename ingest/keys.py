"""The key a reading must be signed with: the one its device held on-chain at the reading's
time (DeviceRegistry events, rotations included), not the database's copy of the address.

The chain's key history (`gridshare.core.chain.device_keys`) is read once at start and then
followed: every `refresh_seconds`, and at once when a batch holds readings whose signature
does not match the cached key, which is what a rotation looks like until its event is read
(one `eth_blockNumber` call per such batch when nothing new was mined). A device the chain
does not know (ephemeral simulator devices, `provision --skip-chain`, or no deployment at
all) is checked against the database's address; such a device never reaches an attestation,
whose signers check the chain again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from gridshare.core import chain
from gridshare.core.chain.device_keys import DeviceKeys, KeySpan
from gridshare.core.errors import NotDeployed
from gridshare.core.settings import Settings

log = logging.getLogger(__name__)


class OnchainSigners:
    """Cached on-chain key spans per device id, refreshed from the chain's events."""

    def __init__(self, keys: DeviceKeys, refresh_seconds: float = 5.0) -> None:
        self.keys = keys
        self.refresh_seconds = refresh_seconds
        self._spans: dict[str, list[KeySpan]] = {}
        self._block = -1
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> OnchainSigners | None:
        """The chain's signers when this chain has a deployment record, read up to now (an
        unreachable chain is a one-line ServiceUnreachable); None without a deployment."""
        try:
            record = chain.read_deployment(settings)
        except NotDeployed:
            log.warning(
                "no deployment record for this chain: signatures are checked against the"
                " database's device addresses"
            )
            return None
        w3 = chain.connect(settings)
        signers = cls(DeviceKeys(w3, record.address("DeviceRegistry"), record.block))
        signers.refresh(force=True)
        return signers

    def signer(self, device_id: str, moment: datetime) -> tuple[bool, str | None]:
        """(whether the chain knows the device, the address it held at `moment`)."""
        spans = self._spans.get(device_id)
        if spans is None:
            spans = self.keys.spans(device_id)
            self._spans[device_id] = spans
        if not spans:
            return False, None
        if len(spans) == 1 and spans[0].valid_from is None:  # never rotated: no time to compare
            return True, spans[0].address
        return True, next((s.address for s in spans if s.holds(moment)), None)

    def refresh(self, force: bool = False) -> bool:
        """Read new key events if due, or now with `force`; whether anything new was read.
        Chain errors are logged and the cache kept: ingest goes on with the keys it knows."""
        now = time.monotonic()
        if not force and now - self._refreshed_at <= self.refresh_seconds:
            return False
        with self._lock:
            self._refreshed_at = now
            try:
                latest = int(self.keys.w3.eth.block_number)
                if latest == self._block:
                    return False
                self.keys.refresh()
            except Exception as exc:  # the chain's RPC failing must not stop ingest
                log.warning("chain key refresh failed", extra={"fields": {"error": str(exc)}})
                return False
            self._block = latest
            self._spans = {}
        return True
