"""Sign-In with Ethereum (EIP-4361) for investors, bearer tokens, operator keys, rate limits.

Flow: POST /v1/auth/nonce issues a nonce bound to an address; the wallet signs the returned
message; POST /v1/auth/login presents message and signature. The message must carry this
API's domain and chain id, be unexpired, be signed by its address, and use a nonce issued to
that address. The answer is an HS256 JWT for the address.

The API only reads the database, so nonces are stateless: random bits, expiry and address,
authenticated with an HMAC under a key derived from the JWT secret, which every API worker
shares, so any worker checks a nonce any other issued. Each worker spends a nonce as it is
presented (single use, even when the check then fails) and remembers it until it expires.
Workers do not share what they spent: within its 10 minutes a signed message replayed to
another worker signs in once more, as the same address. That gives the replayer only what
the signed message already gave its holder (a read-only session for that address, which
the API's bearer token is anyway); it cannot sign in as anyone else, nor with a nonce or an
expiry of its own making.

Secrets: GRIDSHARE_API_JWT_SECRET and GRIDSHARE_API_KEY, or, when empty, random values
generated once into `{state_dir}/api/` (mode 0600), so restarts keep tokens valid.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

import jwt
from eth_utils import is_hex_address, to_checksum_address

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
# A nonce is hex (EIP-4361 nonces are alphanumeric): 8 random bytes, the expiry in Unix
# seconds, the address it was issued to, then a 16-byte HMAC-SHA256 over those three.
NONCE = re.compile(r"([0-9a-f]{16})([0-9a-f]{10})([0-9a-f]{40})([0-9a-f]{32})")
NONCE_KEY_LABEL = b"gridshare siwe nonce"  # the nonce key is HMAC(jwt secret, this label)
MAX_SPENT_NONCES = 100_000  # per process; more sign-ins per 10 minutes evict the oldest


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


class SpentNonces:
    """The nonces this process has seen presented, each until it expires.

    Kept in the order they were spent, which is nearly their order of expiry (every nonce
    lives NONCE_TTL), so expired ones are dropped from the front. Beyond `capacity` the
    oldest is forgotten early: its message may then sign in once more, as its own address,
    the same (bounded) replay the module docstring accepts between workers."""

    def __init__(self, capacity: int = MAX_SPENT_NONCES) -> None:
        self.capacity = capacity
        self.expiry: dict[str, float] = {}

    def spend(self, nonce: str, expires: float, now: float) -> bool:
        """True the first time `nonce` is presented, False after."""
        if nonce in self.expiry:
            return False
        while self.expiry and (
            next(iter(self.expiry.values())) <= now or len(self.expiry) >= self.capacity
        ):
            del self.expiry[next(iter(self.expiry))]
        self.expiry[nonce] = expires
        return True


@dataclass
class Authenticator:
    settings: Settings
    jwt_secret: str
    api_key: str
    domain: str = ""
    ttl: timedelta = field(default_factory=lambda: timedelta(hours=1))
    spent: SpentNonces = field(default_factory=SpentNonces)

    @cached_property
    def nonce_key(self) -> bytes:
        """A key of its own for nonces, derived once from the JWT secret all workers share."""
        return hmac.new(self.jwt_secret.encode(), NONCE_KEY_LABEL, hashlib.sha256).digest()

    def _nonce_mac(self, random_hex: str, expires_hex: str, address_hex: str) -> str:
        body = f"{random_hex}{expires_hex}{address_hex}".encode()
        return hmac.new(self.nonce_key, body, hashlib.sha256).digest()[:16].hex()

    def _new_nonce(self, address: str, expires: datetime) -> str:
        random_hex = secrets.token_hex(8)
        expires_hex = f"{int(expires.timestamp()):010x}"
        address_hex = address[2:].lower()
        return (
            random_hex
            + expires_hex
            + address_hex
            + self._nonce_mac(random_hex, expires_hex, address_hex)
        )

    def _open_nonce(self, untrusted_nonce: object) -> tuple[str, datetime]:
        """(checksummed address, expiry) of a nonce this API issued, else 401."""
        match = NONCE.fullmatch(untrusted_nonce) if isinstance(untrusted_nonce, str) else None
        if match is None or not hmac.compare_digest(
            match[4], self._nonce_mac(match[1], match[2], match[3])
        ):
            raise unauthorized("nonce_invalid", "nonce unknown or already used; get a new one")
        return to_checksum_address("0x" + match[3]), datetime.fromtimestamp(int(match[2], 16), UTC)

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

    def issue_nonce(self, untrusted_address: str) -> tuple[str, str, datetime]:
        """(nonce, message, expires_at) for an address; nothing is stored."""
        address = checksum(untrusted_address)
        now = datetime.now(UTC).replace(microsecond=0)
        expires = now + NONCE_TTL
        nonce = self._new_nonce(address, expires)
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
        return nonce, message, expires

    def login(self, untrusted_message: str, untrusted_signature: str) -> tuple[str, datetime, str]:
        """(token, expires_at, address) for a valid signed message, else 400/401."""
        if len(untrusted_message.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES:
            raise bad_request(f"message: longer than {MAX_MESSAGE_BYTES} bytes")
        try:
            message = siwe.SiweMessage.from_message(untrusted_message)
        except Exception as exc:  # the parser raises assorted errors for malformed text
            raise bad_request("message: not an EIP-4361 message") from exc
        issued_to, nonce_expires = self._open_nonce(message.nonce)
        now = datetime.now(UTC)
        if not self.spent.spend(message.nonce, nonce_expires.timestamp(), now.timestamp()):
            raise unauthorized("nonce_invalid", "nonce unknown or already used; get a new one")
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
