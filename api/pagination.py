"""Opaque keyset cursors: the sort key of a page's last row, base64url-encoded JSON.

Keyset (not offset) pagination stays fast on deep pages and stable while rows are added. A
cursor is tied to its listing by a short kind tag, so one listing's cursor is refused by
another with 400 rather than silently misread.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from psycopg import AsyncConnection

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


class Listing:
    """A listing's query: a SELECT, the filters a request asks for, then one keyset page."""

    def __init__(self, select: str, params: Sequence[object] = ()) -> None:
        self.select = select
        self.conditions: list[str] = []
        self.params = list(params)

    def where(self, condition: str, value: object) -> None:
        """Add a condition with one `%s` placeholder for `value`."""
        self.conditions.append(condition)
        self.params.append(value)

    def after(self, kind: str, cursor: str | None, condition: str, types: tuple[type, ...]) -> None:
        """Continue after the key in `cursor` (none: from the start); `condition` has one
        placeholder per part of the key."""
        if cursor is not None:
            self.conditions.append(condition)
            self.params.extend(decode(kind, cursor, types))

    async def page(
        self, conn: AsyncConnection, order_by: str, limit: int
    ) -> tuple[list[tuple], bool]:
        """Up to `limit` rows in `order_by` order, and whether more follow (one row more is
        fetched to tell)."""
        sql = self.select
        if self.conditions:
            sql += " WHERE " + " AND ".join(self.conditions)
        sql += f" ORDER BY {order_by} LIMIT %s"
        cur = await conn.execute(sql, [*self.params, limit + 1])
        rows = await cur.fetchall()
        return rows[:limit], len(rows) > limit
