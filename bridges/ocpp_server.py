"""The OCPP central system: chargers connect to `ws[s]://HOST:PORT/{charger_id}`.

The WebSocket handshake does what OCPP security profiles 1 and 2 ask: HTTP Basic with the
charger id as user name and the charger's password (profile 2 adds TLS: pass a certificate).
The path's last segment must equal that user name. The subprotocol is negotiated: the
server prefers `ocpp2.0.1` and speaks `ocpp1.6` to chargers that offer only that; a charger
offering neither is refused. A charger that connects again replaces its older connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http
import logging
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHeader
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response

from gridshare.bridges.device import BridgedMeter
from gridshare.bridges.ocpp16 import CentralSystem16
from gridshare.bridges.ocpp201 import Csms201
from gridshare.bridges.ocpp_common import ChargerSession
from gridshare.bridges.publisher import Publishers, require_broker
from gridshare.bridges.store import BridgeStore
from gridshare.core.errors import ConfigError
from gridshare.core.settings import Settings
from gridshare.gateway.ocpp import verify_password

SUBPROTOCOLS = ["ocpp2.0.1", "ocpp1.6"]
REALM = "gridshare"
log = logging.getLogger(__name__)


class CentralSystem:
    """Authenticates chargers and runs one version-specific handler per connection."""

    def __init__(self, settings: Settings, store: BridgeStore, publishers: Publishers) -> None:
        self.settings = settings
        self.store = store
        self.publishers = publishers
        self.connections: dict[str, ServerConnection] = {}
        self._devices: dict[str, str] = {}  # charger id -> device id, once authenticated
        self._verified: dict[str, tuple[str, bytes]] = {}  # charger id -> (hash, sha256(pw))

    async def serve(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> Server:
        logging.getLogger("ocpp").setLevel(logging.WARNING)  # it logs every frame at INFO
        return await serve(
            self._handle,
            host,
            port,
            subprotocols=SUBPROTOCOLS,  # type: ignore[arg-type]
            process_request=self._authenticate,
            ssl=tls,
            ping_interval=None,  # chargers keep the link alive with Heartbeat / pings
            max_size=1 << 20,
        )

    async def _authenticate(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        charger_id = unquote(urlsplit(request.path).path.rstrip("/").rpartition("/")[2])
        try:
            untrusted_user, untrusted_password = parse_authorization_basic(
                request.headers["Authorization"]
            )
        except (KeyError, InvalidHeader):
            return _unauthorized(connection, "HTTP Basic credentials required\n")
        if untrusted_user != charger_id or not await self._password_ok(
            charger_id, untrusted_password
        ):
            log.warning("charger refused", extra={"fields": {"charger_id": charger_id[:48]}})
            return _unauthorized(connection, "unknown charger or wrong password\n")
        connection.username = charger_id
        return None

    async def _password_ok(self, charger_id: str, untrusted_password: str) -> bool:
        row = await self.store.charger(charger_id)
        if row is None:
            return False
        device_id, stored_hash = row
        digest = hashlib.sha256(untrusted_password.encode()).digest()
        if self._verified.get(charger_id) == (stored_hash, digest):
            return True  # the same password as last time: skip the slow hash
        if not verify_password(untrusted_password, stored_hash):
            return False
        self._verified[charger_id] = (stored_hash, digest)
        self._devices[charger_id] = device_id
        return True

    async def _handle(self, connection: ServerConnection) -> None:
        charger_id = connection.username
        older = self.connections.get(charger_id)
        if older is not None:
            await older.close(1000, "replaced by a new connection")
        self.connections[charger_id] = connection
        meter = await BridgedMeter.open(
            self.settings, self._devices[charger_id], self.store, self.publishers
        )
        await meter.online()
        session = ChargerSession(charger_id, meter)
        kind: Any = Csms201 if connection.subprotocol == "ocpp2.0.1" else CentralSystem16
        handler = kind(session, connection)
        log.info(
            "charger connected",
            extra={"fields": {"charger_id": charger_id, "ocpp": connection.subprotocol}},
        )
        try:
            await handler.start()
        except ConnectionClosed:
            pass
        finally:
            if self.connections.get(charger_id) is connection:
                del self.connections[charger_id]
                with contextlib.suppress(Exception):
                    await meter.release()
            log.info("charger disconnected", extra={"fields": {"charger_id": charger_id}})


def _unauthorized(connection: ServerConnection, text: str) -> Response:
    response = connection.respond(http.HTTPStatus.UNAUTHORIZED, text)
    response.headers["WWW-Authenticate"] = build_www_authenticate_basic(REALM)
    return response


async def run(
    settings: Settings, host: str, port: int, tls: ssl.SSLContext | None, stop: asyncio.Event
) -> None:
    """Serve until `stop` is set; then close chargers' connections and broker sessions."""
    require_broker(settings)
    store = await BridgeStore.open(settings)
    publishers = Publishers()
    try:
        central = CentralSystem(settings, store, publishers)
        try:
            server = await central.serve(host, port, tls)
        except OSError as exc:
            raise ConfigError("--host/--port", f"cannot listen on {host}:{port}: {exc}") from exc
        log.info("ocpp bridge listening", extra={"fields": {"host": host, "port": port}})
        async with server:
            await stop.wait()
            server.close()
    finally:
        await publishers.close()
        await store.close()
