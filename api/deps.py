"""Typed dependencies: the app context, a pooled connection, the signed-in investor, the
operator key. Routes declare what they need with these `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from gridshare.api.auth import Authenticator, RateLimiter
from gridshare.api.chain import ChainReader
from gridshare.api.readings import ReadingStore
from gridshare.api.stream import StreamHub
from gridshare.core.db import Flavor
from gridshare.core.settings import Settings


@dataclass
class ApiContext:
    """Everything the routes share, built once at start-up (see `main.lifespan`)."""

    settings: Settings
    pool: AsyncConnectionPool
    flavor: Flavor
    store: ReadingStore
    chain: ChainReader
    auth: Authenticator
    limiter: RateLimiter
    hub: StreamHub


async def context(request: Request) -> ApiContext:
    return request.app.state.ctx


Context = Annotated[ApiContext, Depends(context)]


async def connection(ctx: Context) -> AsyncIterator[AsyncConnection]:
    async with ctx.pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection, Depends(connection)]


BEARER = HTTPBearer(auto_error=False, description="token from POST /v1/auth/login")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="operator API key")


async def signed_in_address(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> str:
    """The checksummed address of a valid bearer token (401 otherwise)."""
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    return ctx.auth.address_for(header)


SignedIn = Annotated[str, Depends(signed_in_address)]


async def operator(ctx: Context, x_api_key: Annotated[str | None, Depends(API_KEY)]) -> None:
    """Operator-only endpoints: 401 without X-API-Key, 403 with a wrong one."""
    ctx.auth.check_api_key(x_api_key)


async def rate_limited(ctx: Context, request: Request) -> None:
    ctx.limiter.take(request.client.host if request.client else "unknown")
