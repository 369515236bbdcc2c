"""The investor dashboard: one static page that reads the API it is served by."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from gridshare.api.paths import STATIC_DIR

router = APIRouter(tags=["dashboard"])


@router.get(
    "/",
    response_class=FileResponse,
    summary="Investor dashboard (HTML)",
    responses={200: {"content": {"text/html": {}}, "description": "the dashboard page"}},
)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
