"""The FastAPI app: routers assembled, shared context opened and closed with the app."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gridshare import __version__
from gridshare.api import errors
from gridshare.api.auth import Authenticator, RateLimiter
from gridshare.api.chain import ChainReader
from gridshare.api.deps import ApiContext
from gridshare.api.metrics import MetricsMiddleware
from gridshare.api.paths import STATIC_DIR, uplot_dir
from gridshare.api.readings import HourlyReadings, RawReadings, ReadingStore
from gridshare.api.routes import auth, dashboard, devices, health, investors, operator, pools
from gridshare.api.routes import evidence as evidence_routes
from gridshare.api.routes import stream as stream_routes
from gridshare.api.schemas import ErrorResponse
from gridshare.api.stream import StreamHub
from gridshare.core import db
from gridshare.core.db import Flavor
from gridshare.core.settings import Settings


def reading_store(flavor: Flavor) -> ReadingStore:
    """The continuous aggregate on TimescaleDB; raw probes on plain PostgreSQL (where the
    hourly view would re-aggregate a device's whole history on every request)."""
    return HourlyReadings() if flavor is Flavor.TIMESCALE else RawReadings()


async def open_context(settings: Settings, stream_window: float = 0.25) -> ApiContext:
    settings = settings.for_service("api")  # read-only: every connection as the API's role
    with db.connect(settings) as conn:  # once, at start-up
        flavor = db.schema_flavor(conn) or Flavor.POSTGRES
    pool = await db.async_pool(settings, autocommit=True)  # each statement stands alone
    hub = StreamHub(settings.db_url, pool, window=stream_window)
    hub.start()
    return ApiContext(
        settings=settings,
        pool=pool,
        flavor=flavor,
        store=reading_store(flavor),
        chain=ChainReader(settings),
        auth=Authenticator.from_settings(settings),
        limiter=RateLimiter(),
        hub=hub,
    )


def create_app(settings: Settings, context: ApiContext | None = None) -> FastAPI:
    """The app; it opens its own context at start-up unless one is given (tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = context is None
        app.state.ctx = context or await open_context(settings)
        gc.freeze()  # start-up objects are never collected: shorter GC pauses
        try:
            yield
        finally:
            if own:
                await app.state.ctx.hub.stop()
                await app.state.ctx.pool.close()

    app = FastAPI(
        title="gridshare API",
        version=__version__,
        summary="Devices, charge, income, pools, attestations, proofs and portfolios",
        lifespan=lifespan,
        docs_url=None,  # the Swagger/ReDoc pages load their assets from a CDN
        redoc_url=None,
        responses={
            400: {"model": ErrorResponse, "description": "bad parameters"},
            404: {"model": ErrorResponse, "description": "unknown resource"},
            500: {"model": ErrorResponse, "description": "internal error"},
        },
    )
    errors.install(app)
    app.add_middleware(MetricsMiddleware)
    for module in (health, devices, pools, auth, investors, stream_routes, operator, dashboard):
        app.include_router(module.router)
    app.include_router(evidence_routes.router)
    uplot = uplot_dir()
    if uplot is not None:
        app.mount("/static/vendor/uplot", StaticFiles(directory=uplot), name="uplot")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The schema with FastAPI's default 422 replaced by our 400 error shape."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    for path in schema.get("paths", {}).values():
        for op in path.values():
            responses = op.get("responses", {})
            responses.pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema
