"""Sign-In with Ethereum, bearer tokens, the portfolio's access rule, rate limit, API key."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import jwt
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from gridshare.api.auth import Authenticator, SpentNonces
from gridshare.api.errors import ApiError
from gridshare.api.main import create_app
from gridshare.core.settings import Settings
from tests.api.conftest import SIWE_DOMAIN

ALICE = Account.from_key(b"\x11" * 32)
BOB = Account.from_key(b"\x22" * 32)


def sign(account, message: str) -> str:
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix(
        "0x"
    )


def nonce_for(client: TestClient, address: str) -> dict:
    res = client.post("/v1/auth/nonce", json={"address": address})
    assert res.status_code == 200, res.text
    return res.json()


def login(client: TestClient, account) -> str:
    issued = nonce_for(client, account.address)
    res = client.post(
        "/v1/auth/login",
        json={"message": issued["message"], "signature": sign(account, issued["message"])},
    )
    assert res.status_code == 200, res.text
    return res.json()["token"]


def test_nonce_message_is_eip4361_for_this_domain_and_chain(client: TestClient) -> None:
    issued = nonce_for(client, ALICE.address.lower())
    message = issued["message"]
    assert message.startswith(f"{SIWE_DOMAIN} wants you to sign in with your Ethereum account:\n")
    assert f"\n{ALICE.address}\n" in message  # checksummed
    assert f"Nonce: {issued['nonce']}" in message
    assert "Chain ID: 31337" in message
    expires = re.search(r"Expiration Time: (\S+)", message).group(1)
    left = datetime.fromisoformat(expires.replace("Z", "+00:00")) - datetime.now(UTC)
    assert timedelta(minutes=9) < left <= timedelta(minutes=10)


def test_login_gives_a_token_for_the_address(client: TestClient) -> None:
    issued = nonce_for(client, ALICE.address)
    res = client.post(
        "/v1/auth/login",
        json={"message": issued["message"], "signature": sign(ALICE, issued["message"])},
    )
    assert res.status_code == 200
    body = res.json()
    assert body["address"] == ALICE.address
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == ALICE.address
    assert claims["exp"] > datetime.now(UTC).timestamp()


def test_replayed_nonce_is_refused(client: TestClient) -> None:
    issued = nonce_for(client, ALICE.address)
    body = {"message": issued["message"], "signature": sign(ALICE, issued["message"])}
    assert client.post("/v1/auth/login", json=body).status_code == 200
    replay = client.post("/v1/auth/login", json=body)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "nonce_invalid"


def test_wrong_domain_is_refused(client: TestClient) -> None:
    issued = nonce_for(client, ALICE.address)
    message = issued["message"].replace(SIWE_DOMAIN, "evil.example", 1)
    res = client.post(
        "/v1/auth/login", json={"message": message, "signature": sign(ALICE, message)}
    )
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "domain_mismatch"


def test_expired_message_is_refused(client: TestClient) -> None:
    issued = nonce_for(client, ALICE.address)
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = re.sub(r"Expiration Time: \S+", f"Expiration Time: {past}", issued["message"])
    res = client.post(
        "/v1/auth/login", json={"message": message, "signature": sign(ALICE, message)}
    )
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "message_expired"


def test_signature_of_another_address_is_refused(client: TestClient) -> None:
    issued = nonce_for(client, ALICE.address)
    res = client.post(
        "/v1/auth/login",
        json={"message": issued["message"], "signature": sign(BOB, issued["message"])},
    )
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "invalid_signature"


def test_nonce_of_another_address_is_refused(client: TestClient) -> None:
    issued = nonce_for(client, ALICE.address)
    message = issued["message"].replace(ALICE.address, BOB.address)
    res = client.post("/v1/auth/login", json={"message": message, "signature": sign(BOB, message)})
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "address_mismatch"


def test_garbage_login_is_400(client: TestClient) -> None:
    res = client.post("/v1/auth/login", json={"message": "hello", "signature": "0x00"})
    assert res.status_code == 400
    assert client.post("/v1/auth/nonce", json={"address": "0x1234"}).status_code == 400
    assert client.post("/v1/auth/nonce", json={}).status_code == 400


def test_portfolio_needs_that_address_token(client: TestClient) -> None:
    token = login(client, ALICE)
    url = f"/v1/investors/{ALICE.address}/portfolio"
    missing = client.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    other = client.get(
        f"/v1/investors/{BOB.address}/portfolio", headers={"Authorization": f"Bearer {token}"}
    )
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "forbidden"
    head, payload, signature = token.split(".")
    tampered_sig = f"{head}.{payload}.{signature[:-4]}AAAA"
    assert client.get(url, headers={"Authorization": f"Bearer {tampered_sig}"}).status_code == 401
    forged = jwt.encode(
        {
            "sub": ALICE.address,
            "exp": 2**40,
            "iat": 0,
            "aud": "gridshare-investor",
            "iss": SIWE_DOMAIN,
        },
        "a-guessed-secret-as-long-as-the-real-one",
        algorithm="HS256",
    )
    res = client.get(url, headers={"Authorization": f"Bearer {forged}"})
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "invalid_token"
    none_alg = jwt.encode({"sub": ALICE.address}, None, algorithm="none")
    assert client.get(url, headers={"Authorization": f"Bearer {none_alg}"}).status_code == 401
    # The holder's own token passes auth (the chain answers, or 503 without a deployment).
    mine = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code in (200, 503), mine.text


def test_auth_endpoints_are_rate_limited(client: TestClient) -> None:
    codes = [
        client.post("/v1/auth/nonce", json={"address": BOB.address}).status_code for _ in range(30)
    ]
    assert codes[0] == 200
    assert 429 in codes
    limited = client.post("/v1/auth/nonce", json={"address": BOB.address})
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("key", "status"), [(None, 401), ("wrong", 403), ("test-operator-key", 200)]
)
def test_operator_endpoints_need_the_api_key(
    client: TestClient, key: str | None, status: int
) -> None:
    headers = {"X-API-Key": key} if key else {}
    res = client.get("/v1/operator/quarantine", headers=headers)
    assert res.status_code == status, res.text
    if status != 200:
        assert set(res.json()["error"]) == {"code", "message"}


def test_a_forged_or_foreign_nonce_is_refused(client: TestClient) -> None:
    """A nonce is only good with this API's MAC: edited bits or another key's are refused."""
    issued = nonce_for(client, ALICE.address)
    nonce = issued["nonce"]
    flipped = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    later = f"{int(nonce[16:26], 16) + 3600:010x}"
    foreign = Authenticator(Settings(), "another-secret-" * 3, "key", SIWE_DOMAIN)
    for forged in (
        issued["message"].replace(nonce, flipped),
        issued["message"].replace(nonce, nonce[:16] + later + nonce[26:]),
        foreign.issue_nonce(ALICE.address)[1],
    ):
        res = client.post(
            "/v1/auth/login", json={"message": forged, "signature": sign(ALICE, forged)}
        )
        assert res.status_code == 401
        assert res.json()["error"]["code"] == "nonce_invalid"


def test_any_worker_accepts_a_nonce_once() -> None:
    """Workers share the JWT secret, not memory: a nonce issued by one signs in at another,
    and each worker takes it once."""
    settings = Settings(chain_id=31337)
    issuer, other = (Authenticator(settings, "s" * 48, "key", SIWE_DOMAIN) for _ in range(2))
    _, message, _ = issuer.issue_nonce(ALICE.address)
    signature = sign(ALICE, message)
    assert other.login(message, signature)[2] == ALICE.address
    with pytest.raises(ApiError) as replayed:
        other.login(message, signature)
    assert replayed.value.code == "nonce_invalid"


def test_spent_nonces_are_forgotten_when_they_expire_or_beyond_capacity() -> None:
    spent = SpentNonces(capacity=2)
    assert spent.spend("a", expires=10, now=0) and not spent.spend("a", expires=10, now=1)
    assert spent.spend("b", expires=20, now=2)
    assert spent.spend("c", expires=30, now=3)  # full: the oldest, "a", is forgotten
    assert list(spent.expiry) == ["b", "c"]
    assert spent.spend("d", expires=40, now=25)  # "b" expired; "c" is kept
    assert list(spent.expiry) == ["c", "d"]


def test_sign_in_with_only_a_read_only_database_url(api_settings: Settings) -> None:
    """The API needs nothing but its read-only role: with GRIDSHARE_DB_URL unreachable and
    GRIDSHARE_API_DB_URL the reader's, a full sign-in works."""
    if api_settings.db_external:
        pytest.skip("the database is external: its owner manages roles")
    reader = api_settings.service_db_url("api")
    assert urlsplit(reader).username == "gridshare_reader"
    settings = api_settings.model_copy(
        update={"db_url": "postgresql://nobody@127.0.0.1:1/none", "api_db_url": reader}
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.app.state.ctx.settings.db_url == reader  # type: ignore[attr-defined]
        token = login(client, ALICE)
        mine = client.get(
            f"/v1/investors/{ALICE.address}/portfolio",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert mine.status_code in (200, 503), mine.text
