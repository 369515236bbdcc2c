"""Device changes reach a running worker within seconds: LISTEN, and the chain's registry.

Provisioning, `rotate-key` and `revoke` NOTIFY the devices channel (`db.DEVICES_CHANNEL`)
with the device id; this thread LISTENs on its own connection and reloads those devices in
the worker's directory, so a revoked device's next message is refused as `unknown_device`.
After (re)connecting it reloads every device, since notifications sent while it was away are
lost.

The DeviceRegistry is the other authority: a device deactivated on-chain (by whoever holds
the operator role) is marked inactive in the database here too, and NOTIFYed, so every
worker and the API follow. The registry's `DeviceDeactivated` logs are polled from the block
of the deployment record on; without a deployment record (no chain set up) this part waits.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from eth_utils import keccak, to_checksum_address

from gridshare.core import chain, db
from gridshare.core.errors import GridshareError
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.ingest.devices import DeviceDirectory

CHAIN_POLL_SECONDS = 5.0
RECONNECT_SECONDS = 2.0
DEVICE_DEACTIVATED = "0x" + keccak(text="DeviceDeactivated(bytes32)").hex()
log = logging.getLogger(__name__)


class DeviceChanges:
    """The worker's listening thread; `stop` ends it."""

    def __init__(self, settings: Settings, directory: DeviceDirectory) -> None:
        self.settings = settings
        self.directory = directory
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-changes", daemon=True)
        self._next_block: int | None = None
        self._next_poll = 0.0
        self._chain_state = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with db.connect(self.settings, autocommit=True) as conn:
                    conn.execute(f"LISTEN {db.DEVICES_CHANNEL}")
                    self.directory.apply(conn, ["*"])
                    self._listen(conn)
            except (psycopg.Error, GridshareError) as exc:
                log.warning("device changes: reconnecting", extra={"fields": {"error": str(exc)}})
                self._stopped.wait(RECONNECT_SECONDS)

    def _listen(self, conn: psycopg.Connection) -> None:
        while not self._stopped.is_set():
            changed = {n.payload for n in conn.notifies(timeout=1.0, stop_after=1000)}
            if changed:
                self.directory.apply(conn, changed)
            if time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + CHAIN_POLL_SECONDS
                self._follow_chain(conn)

    def _follow_chain(self, conn: psycopg.Connection) -> None:
        """Mark devices deactivated on-chain inactive (and NOTIFY them)."""
        try:
            deactivated = self._deactivated_on_chain()
        except Exception as exc:  # an unreachable or odd chain must not stop the LISTEN side
            self._chain(f"not followed: {type(exc).__name__}: {str(exc)[:200]}")
            return
        self._chain("followed")
        if not deactivated:
            return
        keys = {text_id(d): d for (d,) in conn.execute("SELECT device_id FROM devices")}
        ids = sorted({keys[k] for k in deactivated if k in keys})
        if not ids:
            return
        with conn.transaction():
            rows = conn.execute(
                "UPDATE devices SET active = false, updated_at = now()"
                " WHERE device_id = ANY(%s) AND active RETURNING device_id",
                (ids,),
            ).fetchall()
            for (device_id,) in rows:
                conn.execute("SELECT pg_notify(%s, %s)", (db.DEVICES_CHANNEL, device_id))
        if rows:
            log.info("deactivated on-chain", extra={"fields": {"devices": [r[0] for r in rows]}})

    def _deactivated_on_chain(self) -> list[bytes]:
        """Device keys of the DeviceDeactivated logs since the last poll."""
        client = chain.ChainClient(self.settings)
        record = chain.read_deployment(self.settings)
        latest = client.w3.eth.block_number
        first = record.block if self._next_block is None else self._next_block
        if first > latest:
            return []
        logs = client.w3.eth.get_logs(
            {
                "address": to_checksum_address(record.address("DeviceRegistry")),
                "fromBlock": first,
                "toBlock": latest,
                "topics": [DEVICE_DEACTIVATED],
            }
        )
        self._next_block = latest + 1
        return [bytes(entry["topics"][1]) for entry in logs]

    def _chain(self, state: str) -> None:
        """Log the chain side's state when it changes (not on every poll)."""
        if state != self._chain_state:
            self._chain_state = state
            log.info("device registry", extra={"fields": {"state": state}})
