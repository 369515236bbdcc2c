"""Clearing device flags, with who cleared them and why (ingest sets the flags; the oracle
leaves a flagged device out of attestations until it is cleared; see docs/ingest.md).

A clearance is recorded on each open flag of the device and is final: the rows are never
deleted and a recorded clearance never changes (the database refuses both).
"""

from __future__ import annotations

import getpass
import logging
import socket

from gridshare.core import db
from gridshare.core.errors import GridshareError
from gridshare.core.settings import Settings

log = logging.getLogger(__name__)


class FlagError(GridshareError):
    """A flag cannot be cleared as asked."""


def operator_name() -> str:
    """Who is clearing: the OS user at this host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def clear_flags(settings: Settings, device_id: str, reason: str) -> int:
    """Clear every open flag of `device_id` with `reason`; how many were open."""
    reason = reason.strip()
    if not reason:
        raise FlagError("--reason must say why the device is trusted again")
    operator = operator_name()
    with db.connect(settings, autocommit=True) as conn, conn.transaction():
        if (
            conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (device_id,)).fetchone()
            is None
        ):
            raise FlagError(f"device {device_id}: not in the database")
        cleared = conn.execute(
            "UPDATE device_flags SET cleared_at = now(), cleared_by = %s, clear_reason = %s"
            " WHERE device_id = %s AND cleared_at IS NULL RETURNING id",
            (operator, reason, device_id),
        ).fetchall()
        if cleared:
            conn.execute("SELECT pg_notify(%s, %s)", (db.DEVICES_CHANNEL, device_id))
    log.info(
        "device flags cleared",
        extra={
            "fields": {
                "device_id": device_id,
                "flags": [row[0] for row in cleared],
                "by": operator,
                "reason": reason,
            }
        },
    )
    return len(cleared)
