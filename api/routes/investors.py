"""An investor's holdings, only for the signed-in holder of that address."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from gridshare.api.auth import checksum
from gridshare.api.chain import ChainUnavailable
from gridshare.api.deps import Context, SignedIn
from gridshare.api.errors import ApiError
from gridshare.api.schemas import ErrorResponse, Holding, Portfolio

router = APIRouter(prefix="/v1/investors", tags=["investors"])


@router.get(
    "/{address}/portfolio",
    response_model=Portfolio,
    summary="Per pool: balance, share, claimable, claimed",
    responses={
        401: {"model": ErrorResponse, "description": "no or bad bearer token"},
        403: {"model": ErrorResponse, "description": "token of another address"},
        503: {"model": ErrorResponse, "description": "chain unreachable"},
    },
)
async def portfolio(
    ctx: Context,
    signed_in: SignedIn,
    address: Annotated[str, Path(description="0x address", max_length=42)],
) -> Portfolio:
    holder = checksum(address)
    if holder != signed_in:
        raise ApiError(403, "forbidden", "this token is for another address")
    try:
        figures = await ctx.chain.holdings(holder)
    except ChainUnavailable as exc:
        raise ApiError(503, "chain_unavailable", str(exc)) from exc
    except Exception as exc:
        raise ApiError(503, "chain_unavailable", "chain unreachable; retry later") from exc
    record = ctx.chain.record()
    holdings = []
    for name, f in sorted(figures.items()):
        share = f.balance * 10_000 // f.supply if f.supply else 0
        holdings.append(
            Holding(
                pool=name,
                token_address=record.pools[name].token,
                token_symbol=f.symbol,
                balance=str(f.balance),
                total_supply=str(f.supply),
                share_bps=share,
                claimable=str(f.claimable),
                claimed=str(f.claimed),
                status="recovered" if f.lost else "frozen" if f.frozen else "active",
            )
        )
    return Portfolio(address=holder, holdings=holdings)
