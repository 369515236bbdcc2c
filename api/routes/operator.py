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
    listing = pagination.Listing(
        "SELECT id, received_at, topic, reason, detail, device_id, octet_length(payload)"
        " FROM quarantine"
    )
    if reason is not None:
        listing.where("reason = %s", reason)
    listing.after("quarantine", cursor, "id < %s", (int,))
    rows, more = await listing.page(conn, "id DESC", limit)
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
        for r in rows
    ]
    return QuarantinePage(
        items=items, next_cursor=pagination.encode("quarantine", [items[-1].id]) if more else None
    )
