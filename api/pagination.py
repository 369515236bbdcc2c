"""Opaque keyset cursors: the sort key of a page's last row, base64url-encoded JSON.

Keyset (not offset) pagination stays fast on deep pages and stable while rows are added. A
cursor is tied to its listing by a short kind tag, so one listing's cursor is refused by
another with 400 rather than silently misread.
"""

from __future__ import annotations

import base64
import json

from gridshare.api.errors import bad_request


def encode(kind: str, key: list[str | int]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, untrusted_cursor: str, types: tuple[type, ...]) -> list[str | int]:
    """The key in a cursor made by `encode(kind, ...)`, checked against `types`, or 400."""
    try:
        padded = untrusted_cursor + "=" * (-len(untrusted_cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError) as exc:
        raise bad_request("cursor: not a cursor from this listing") from exc
    if (
        not isinstance(value, list)
        or len(value) != len(types) + 1
        or value[0] != kind
        or not all(type(v) is t for v, t in zip(value[1:], types, strict=True))
        or any(isinstance(v, str) and "\x00" in v for v in value)
        or any(isinstance(v, int) and not -(2**63) <= v < 2**63 for v in value)
    ):
        raise bad_request("cursor: not a cursor from this listing")
    return value[1:]
