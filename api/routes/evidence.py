"""Source evidence: meter values signed by the meter itself (OCMF), kept by the OCPP bridge
beside the device reading it built from them. A reading is named by its `seq`, as in the
telemetry table, so an auditor can set the meter's own signature beside the device's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from gridshare.api import pagination
from gridshare.api.deps import Conn
from gridshare.api.routes.devices import DeviceId, _known

router = APIRouter(prefix="/v1/devices", tags=["devices"])


class EvidenceItem(BaseModel):
    seq: int = Field(description="the device reading this value backs")
    ordinal: int = Field(description="position among the values backing that reading")
    ts: datetime = Field(description="the meter's timestamp")
    format: str = Field(description="'OCMF', or the charger's signing method")
    measurand: str | None
    signed_data: str = Field(description="exactly as the charger sent it")
    signing_method: str | None
    encoding_method: str | None
    public_key: str | None
    received_at: datetime


class EvidencePage(BaseModel):
    items: list[EvidenceItem]
    next_cursor: str | None


@router.get(
    "/{device_id}/evidence",
    response_model=EvidencePage,
    summary="Meter-signed values (OCMF) behind the device's readings",
    responses={404: {"description": "unknown device"}},
)
async def evidence(
    conn: Conn,
    device_id: DeviceId,
    seq: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="one reading")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """In reading order; `seq` narrows to one reading."""
    await _known(conn, device_id)
    after = [-1, -1]
    if cursor is not None:
        after = [int(v) for v in pagination.decode("evidence", cursor, (int, int))]
    cur = await conn.execute(
        "SELECT seq, ordinal, ts, format, measurand, signed_data, signing_method,"
        " encoding_method, public_key, received_at FROM reading_evidence"
        " WHERE device_id = %s AND (seq, ordinal) > (%s, %s)"
        " AND (%s::bigint IS NULL OR seq = %s) ORDER BY seq, ordinal LIMIT %s",
        (device_id, after[0], after[1], seq, seq, limit + 1),
    )
    rows = await cur.fetchall()
    items = [EvidenceItem(**dict(zip(EvidenceItem.model_fields, r, strict=True))) for r in rows]
    more = len(items) > limit
    items = items[:limit]
    next_cursor = (
        pagination.encode("evidence", [items[-1].seq, items[-1].ordinal]) if more else None
    )
    page = EvidencePage(items=items, next_cursor=next_cursor)
    return Response(page.model_dump_json(), media_type="application/json")
