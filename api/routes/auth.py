"""Sign-In with Ethereum: a nonce and message to sign, then a bearer token (rate limited)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gridshare.api.deps import Context, rate_limited
from gridshare.api.schemas import (
    ErrorResponse,
    LoginRequest,
    LoginResponse,
    NonceRequest,
    NonceResponse,
)

router = APIRouter(
    prefix="/v1/auth",
    tags=["auth"],
    dependencies=[Depends(rate_limited)],
    responses={429: {"model": ErrorResponse, "description": "rate limited (per client IP)"}},
)


@router.post("/nonce", response_model=NonceResponse, summary="Nonce and EIP-4361 message")
async def nonce(ctx: Context, body: NonceRequest) -> NonceResponse:
    """A single-use nonce for `address`, valid 10 minutes, inside the full message to sign
    (EIP-191 personal_sign)."""
    value, message, expires = ctx.auth.issue_nonce(body.address)
    return NonceResponse(nonce=value, message=message, expires_at=expires)


@router.post(
    "/login",
    response_model=LoginResponse,
    summary="Bearer token for a signed message",
    responses={401: {"model": ErrorResponse, "description": "nonce, domain, expiry or signature"}},
)
async def login(ctx: Context, body: LoginRequest) -> LoginResponse:
    token, expires, address = ctx.auth.login(body.message, body.signature)
    return LoginResponse(token=token, expires_at=expires, address=address)
