"""Operator-only endpoints, behind the X-API-Key header."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from gridshare.api import pagination
from gridshare.api.deps import Conn, operator
from gridshare.api.schemas import ErrorResponse, QuarantineItem, QuarantinePage

router = APIRouter(
    prefix="/v1/operator",
    tags=["operator"],
    dependencies=[Depends(operator)],
    responses={
        401: {"model": ErrorResponse, "description": "X-API-Key missing"},
        403: {"model": ErrorResponse, "description": "X-API-Key wrong"},
    },
)


@router.get("/quarantine", response_model=QuarantinePage, summary="Rejected messages, newest first")
async def quarantine(
    conn: Conn,
    reason: Annotated[
        str | None, Query(max_length=32, pattern=r"^[a-z_]+$", description="e.g. bad_signature")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> QuarantinePage:
    where, params = [], []
    if reason is not None:
        where.append("reason = %s")
        params.append(reason)
    if cursor is not None:
        (before,) = pagination.decode("quarantine", cursor, (int,))
        where.append("id < %s")
        params.append(before)
    sql = (
        "SELECT id, received_at, topic, reason, detail, device_id, octet_length(payload)"
        " FROM quarantine"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT %s"
    params.append(limit + 1)
    cur = await conn.execute(sql, params)
    rows = await cur.fetchall()
    items = [
        QuarantineItem(
            id=r[0],
            received_at=r[1],
            topic=r[2],
            reason=r[3],
            detail=r[4],
            device_id=r[5],
            payload_size=r[6],
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return QuarantinePage(
        items=items, next_cursor=pagination.encode("quarantine", [items[-1].id]) if more else None
    )
