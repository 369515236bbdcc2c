"""SIWE logins accept only the messages this API issues: its URI, a recent issued-at, and a
message of sensible size (refused before it is parsed)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.api.test_auth import ALICE, nonce_for, sign


def login_with(client: TestClient, message: str):
    return client.post(
        "/v1/auth/login", json={"message": message, "signature": sign(ALICE, message)}
    )


def test_another_uri_is_refused(client: TestClient) -> None:
    message = nonce_for(client, ALICE.address)["message"]
    forged = re.sub(r"URI: \S+", "URI: https://evil.example/login", message)
    res = login_with(client, forged)
    assert res.status_code == 401 and res.json()["error"]["code"] == "uri_mismatch"


def test_an_old_issued_at_is_refused(client: TestClient) -> None:
    message = nonce_for(client, ALICE.address)["message"]
    old = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    res = login_with(client, re.sub(r"Issued At: \S+", f"Issued At: {old}", message))
    assert res.status_code == 401 and res.json()["error"]["code"] == "issued_at_invalid"


def test_an_oversized_message_is_refused_unparsed(client: TestClient) -> None:
    message = nonce_for(client, ALICE.address)["message"]
    huge = message.replace("Sign in", "Sign in" + " pad" * 1000, 1)
    res = login_with(client, huge)
    assert res.status_code == 400 and "longer than" in res.json()["error"]["message"]
    assert login_with(client, message).status_code == 200  # the nonce was not spent
