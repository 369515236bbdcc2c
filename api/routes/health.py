"""Liveness with each dependency's state, and the API's Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gridshare.api.deps import Context
from gridshare.api.metrics import REGISTRY
from gridshare.api.schemas import DependencyState, Health

router = APIRouter(tags=["operations"])


async def _db(ctx: Context) -> DependencyState:
    try:
        async with asyncio.timeout(2.0), ctx.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return DependencyState(ok=True, detail=f"{ctx.flavor.label} schema")
    except Exception as exc:
        return DependencyState(ok=False, detail=_line(exc))


async def _broker(ctx: Context) -> DependencyState:
    host, port = ctx.settings.mqtt_host, ctx.settings.mqtt_port
    try:
        async with asyncio.timeout(2.0):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return DependencyState(ok=True, detail=f"tcp {host}:{port} open")
    except Exception as exc:
        return DependencyState(ok=False, detail=f"tcp {host}:{port}: {_line(exc)}")


async def _chain(ctx: Context) -> DependencyState:
    try:
        async with asyncio.timeout(4.0):
            return DependencyState(ok=True, detail=await ctx.chain.ping())
    except Exception as exc:
        return DependencyState(ok=False, detail=_line(exc))


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else type(exc).__name__) or type(exc).__name__


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness plus each dependency's state",
    responses={503: {"model": Health, "description": "the database is unreachable"}},
)
async def health(ctx: Context) -> JSONResponse:
    """200 while the database answers (status `degraded` if the broker or chain does not);
    503 when the database does not."""
    db, broker, chain = await asyncio.gather(_db(ctx), _broker(ctx), _chain(ctx))
    body = Health(
        status="ok" if db.ok and broker.ok and chain.ok else "degraded",
        db=db,
        broker=broker,
        chain=chain,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if db.ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
