"""Sign-In with Ethereum (EIP-4361) for investors, bearer tokens, operator keys, rate limits.

Flow: POST /v1/auth/nonce issues a nonce bound to an address and stores it with its expiry;
the wallet signs the returned message; POST /v1/auth/login presents message and signature.
The nonce is deleted as it is presented (single use, even when the check then fails), and
the message must carry this API's domain and chain id, be unexpired, be signed by its
address, and use a nonce issued to that address. The answer is an HS256 JWT for the address.

Secrets: GRIDSHARE_API_JWT_SECRET and GRIDSHARE_API_KEY, or, when empty, random values
generated once into `{state_dir}/api/` (mode 0600), so restarts keep tokens valid.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from eth_utils import is_hex_address, to_checksum_address
from psycopg import AsyncConnection

from gridshare.api.errors import ApiError, bad_request
from gridshare.core.errors import ConfigError
from gridshare.core.files import private_dir, write_private
from gridshare.core.settings import Settings

with warnings.catch_warnings():  # the siwe grammar redefines core ABNF rules on import
    warnings.simplefilter("ignore")
    import siwe

NONCE_TTL = timedelta(minutes=10)
CLOCK_SKEW = timedelta(minutes=1)  # a wallet's clock may run this far ahead
MAX_MESSAGE_BYTES = 2048  # a SIWE message we issue is ~600 bytes
SECRET_BYTES = 48  # random bytes of a generated secret
MIN_JWT_SECRET_BYTES = 32  # HS256 keys shorter than the hash are weak
STATEMENT = "Sign in to the gridshare investor dashboard."
AUDIENCE = "gridshare-investor"


def api_domain(settings: Settings) -> str:
    """The SIWE domain: GRIDSHARE_API_DOMAIN, else host:port the API listens on."""
    return settings.api_domain or f"{settings.api_host}:{settings.api_port}"


def state_secret(settings: Settings, name: str, configured: str, min_bytes: int = 0) -> str:
    """`configured` if set, else a random secret kept in `{state_dir}/api/{name}` (0600).

    The file appears whole or not at all (written aside, then hard-linked into place, which
    fails if it exists), so API workers starting together all read the one secret written
    first, never an empty or partial one."""
    if configured:
        if len(configured.encode()) < min_bytes:
            raise ConfigError(f"GRIDSHARE_API_{name.upper()}", f"is shorter than {min_bytes} bytes")
        return configured
    path: Path = private_dir(settings.state_path / "api") / name
    existing = _read_secret(path)
    if existing:
        return existing
    tmp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    write_private(tmp, secrets.token_urlsafe(SECRET_BYTES))
    try:
        os.link(tmp, path)
    except FileExistsError:
        if not _read_secret(path):  # an empty file, left by an older version
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def checksum(untrusted_address: str) -> str:
    if not isinstance(untrusted_address, str) or not is_hex_address(untrusted_address):
        raise bad_request("address: not a 0x-prefixed 20-byte hex address")
    return to_checksum_address(untrusted_address)


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, {"WWW-Authenticate": 'Bearer realm="gridshare"'})


@dataclass
class Authenticator:
    settings: Settings
    jwt_secret: str
    api_key: str
    domain: str = ""
    ttl: timedelta = field(default_factory=lambda: timedelta(hours=1))

    @property
    def uri(self) -> str:
        """The `uri` of the messages we issue, and the only one accepted."""
        return f"http://{self.domain}"

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        return cls(
            settings=settings,
            jwt_secret=state_secret(
                settings, "jwt_secret", settings.api_jwt_secret, MIN_JWT_SECRET_BYTES
            ),
            api_key=state_secret(settings, "api_key", settings.api_key),
            domain=api_domain(settings),
            ttl=timedelta(seconds=settings.api_token_ttl_seconds),
        )

    async def issue_nonce(
        self, conn: AsyncConnection, untrusted_address: str
    ) -> tuple[str, str, datetime]:
        """(nonce, message, expires_at) for an address; stored until used or expired."""
        address = checksum(untrusted_address)
        now = datetime.now(UTC).replace(microsecond=0)
        expires = now + NONCE_TTL
        nonce = siwe.generate_nonce()
        message = siwe.SiweMessage(
            domain=self.domain,
            address=address,
            statement=STATEMENT,
            uri=self.uri,
            version="1",
            chain_id=self.settings.chain_id,
            nonce=nonce,
            issued_at=_iso(now),
            expiration_time=_iso(expires),
        ).prepare_message()
        await conn.execute("DELETE FROM auth_nonces WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO auth_nonces (nonce, address, message, expires_at) VALUES (%s, %s, %s, %s)",
            (nonce, address, message, expires),
        )
        return nonce, message, expires

    async def login(
        self, conn: AsyncConnection, untrusted_message: str, untrusted_signature: str
    ) -> tuple[str, datetime, str]:
        """(token, expires_at, address) for a valid signed message, else 400/401."""
        if len(untrusted_message.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES:
            raise bad_request(f"message: longer than {MAX_MESSAGE_BYTES} bytes")
        try:
            message = siwe.SiweMessage.from_message(untrusted_message)
        except Exception as exc:  # the parser raises assorted errors for malformed text
            raise bad_request("message: not an EIP-4361 message") from exc
        cur = await conn.execute(
            "DELETE FROM auth_nonces WHERE nonce = %s RETURNING address, expires_at",
            (message.nonce,),
        )
        row = await cur.fetchone()
        if row is None:
            raise unauthorized("nonce_invalid", "nonce unknown or already used; get a new one")
        issued_to, nonce_expires = row
        now = datetime.now(UTC)
        if message.domain != self.domain:
            raise unauthorized("domain_mismatch", f"message is for {message.domain!r}")
        if message.chain_id != self.settings.chain_id:
            raise unauthorized("chain_mismatch", f"message is for chain {message.chain_id}")
        if message.address != issued_to:
            raise unauthorized("address_mismatch", "nonce was issued to another address")
        if message.uri != self.uri:
            raise unauthorized("uri_mismatch", "message is for another URI")
        issued_at = _parse_time(message.issued_at)
        if issued_at is None or not now - NONCE_TTL <= issued_at <= now + CLOCK_SKEW:
            raise unauthorized("issued_at_invalid", "issued-at is not a time of the last minutes")
        if nonce_expires <= now:
            raise unauthorized("message_expired", "nonce expired; get a new one")
        try:
            message.verify(untrusted_signature, domain=self.domain, nonce=message.nonce)
        except siwe.ExpiredMessage as exc:
            raise unauthorized("message_expired", "message expired") from exc
        except siwe.NotYetValidMessage as exc:
            raise unauthorized("message_not_yet_valid", "message not yet valid") from exc
        except siwe.VerificationError as exc:
            raise unauthorized("invalid_signature", "signature does not match") from exc
        except Exception as exc:  # malformed signature hex
            raise unauthorized("invalid_signature", "signature does not match") from exc
        expires = now.replace(microsecond=0) + self.ttl
        claims = {
            "sub": message.address,
            "aud": AUDIENCE,
            "iss": self.domain,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        return jwt.encode(claims, self.jwt_secret, algorithm="HS256"), expires, message.address

    def address_for(self, untrusted_authorization: str | None) -> str:
        """The address a `Bearer` token was issued to, or 401."""
        if not untrusted_authorization:
            raise unauthorized("unauthorized", "sign in: Authorization: Bearer <token> required")
        scheme, _, token = untrusted_authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("unauthorized", "Authorization must be 'Bearer <token>'")
        try:
            claims = jwt.decode(
                token.strip(),
                self.jwt_secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=self.domain,
                options={"require": ["sub", "exp", "iat", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized("token_expired", "token expired; sign in again") from exc
        except jwt.PyJWTError as exc:
            raise unauthorized("invalid_token", "token invalid") from exc
        return str(claims["sub"])

    def check_api_key(self, untrusted_key: str | None) -> None:
        if not untrusted_key:
            raise ApiError(401, "unauthorized", "X-API-Key header required")
        if not hmac.compare_digest(untrusted_key.encode(), self.api_key.encode()):
            raise ApiError(403, "forbidden", "API key not accepted")


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(untrusted_text: object) -> datetime | None:
    """An RFC 3339 time with an offset, or None."""
    try:
        parsed = datetime.fromisoformat(str(untrusted_text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class RateLimiter:
    """Token bucket per client IP, in process: `burst` requests, refilled at `rate` per second.

    In-process is enough for one API process; behind several processes each keeps its own
    buckets (the effective limit multiplies). Clients are keyed by the peer address; a proxy in
    front would need to pass the real one. The table is pruned of full buckets when it grows.
    """

    def __init__(self, rate: float = 0.5, burst: int = 20, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> None:
        now = time.monotonic()
        tokens, last = self.buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            retry = max(1, int((1.0 - tokens) / self.rate) + 1)
            raise ApiError(
                429,
                "rate_limited",
                "too many auth requests; retry later",
                {"Retry-After": str(retry)},
            )
        self.buckets[client] = (tokens - 1.0, now)
        if len(self.buckets) > self.max_clients:
            self._prune(now)

    def _prune(self, now: float) -> None:
        full = [
            c for c, (t, last) in self.buckets.items() if t + (now - last) * self.rate >= self.burst
        ]
        for c in full:
            del self.buckets[c]
        while len(self.buckets) > self.max_clients:
            self.buckets.pop(next(iter(self.buckets)))
