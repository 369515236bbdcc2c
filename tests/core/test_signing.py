"""Device signatures: coincurve's recovery agrees with eth-account's EIP-191 rule, from the
hex signature devices send and from the 65 bytes the database keeps, and refuses malformed
signatures."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from gridshare.core.errors import SignatureError
from gridshare.core.signing import address_for_key, recover, recover_raw, sign

KEY = bytes(range(1, 33))
MESSAGE = b'{"device_id":"cp-1","seq":7,"ts":"2026-11-01T00:00:00Z"}'


def test_recovery_agrees_with_eth_account() -> None:
    signature = sign(KEY, MESSAGE)
    expected = Account.recover_message(encode_defunct(MESSAGE), signature=signature)
    assert expected == address_for_key(KEY)
    assert recover(MESSAGE, signature) == recover_raw(MESSAGE, bytes.fromhex(signature[2:]))
    assert recover_raw(MESSAGE, bytes.fromhex(signature[2:])) == expected
    assert recover_raw(MESSAGE + b" ", bytes.fromhex(signature[2:])) != expected


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x01" * 64, b"\x01" * 64 + b"\x1d", b"\x00" * 64 + b"\x1b"],
    ids=["empty", "64 bytes", "recovery id 29", "zero r and s"],
)
def test_malformed_signatures_are_refused(raw: bytes) -> None:
    with pytest.raises(SignatureError):
        recover_raw(MESSAGE, raw)
