"""Server-sent events of live device updates, fanned out from one LISTEN connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from gridshare.api.deps import Context

router = APIRouter(prefix="/v1", tags=["live"])
HEARTBEAT_SECONDS = 15.0


@router.get(
    "/stream",
    summary="Server-sent events of live device updates",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}},
)
async def stream(
    ctx: Context,
    request: Request,
    pool: Annotated[
        str | None,
        Query(max_length=100, pattern=r"^[A-Za-z0-9_.-]+$", description="only this pool"),
    ] = None,
    device_id: Annotated[str | None, Query(max_length=64, description="only this device")] = None,
) -> StreamingResponse:
    """Events `device` with a JSON `DeviceUpdate` each, as ingest commits readings; a comment
    line every 15 s keeps proxies from closing an idle stream."""

    async def events() -> AsyncIterator[str]:
        async with ctx.hub.subscribe(pool=pool, device_id=device_id) as sub:
            yield "retry: 3000\n: connected\n\n"
            while True:
                try:
                    data = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": heartbeat\n\n"
                    continue
                if data is None:  # the API is shutting down
                    return
                yield f"event: device\ndata: {data}\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
