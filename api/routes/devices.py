"""Devices: current state (from `device_state`), bucketed telemetry and income."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from gridshare.api import pagination
from gridshare.api.attested import income_buckets
from gridshare.api.deps import Conn, Context
from gridshare.api.errors import bad_request, not_found
from gridshare.api.readings import BUCKETS, MAX_POINTS, BucketQuery, bucketed
from gridshare.api.schemas import (
    BucketName,
    Device,
    DevicePage,
    DeviceType,
    IncomePoint,
    IncomeSeries,
    SignedReading,
    SignedReadingPage,
    TelemetryPoint,
    TelemetrySeries,
)
from gridshare.core.timegrid import UNIX_EPOCH as EPOCH
from gridshare.core.timegrid import align, micros

router = APIRouter(prefix="/v1/devices", tags=["devices"])

DEVICE_COLUMNS = """
    d.device_id, d.type, d.pool, d.address, d.active,
    coalesce(s.online, false), s.status, s.last_seen, s.last_ts, s.last_seq,
    coalesce(s.readings, 0), s.power_w, s.soc_pct, s.energy_wh_total, s.sessions_total,
    s.revenue_minor_total, d.rated_power_w,
    EXISTS (SELECT 1 FROM device_flags f WHERE f.device_id = d.device_id AND f.cleared_at IS NULL)
"""
DEVICE_SQL = f"""
    SELECT {DEVICE_COLUMNS} FROM devices d LEFT JOIN device_state s USING (device_id)
    WHERE d.device_id = %s
"""
DeviceId = Annotated[
    str, Path(description="e.g. cp-000042", max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
CURRENCY = "HKD"
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
READINGS_SQL = """
    SELECT seq, time, received_at, signed_bytes, sig FROM telemetry
    WHERE device_id = %s AND time >= %s AND time < %s AND (time, seq) > (%s, %s)
    ORDER BY time, seq LIMIT %s
"""


def device_from_row(row: tuple) -> Device:
    return Device(
        device_id=row[0],
        type=row[1],
        pool=row[2],
        address=row[3],
        active=row[4],
        online=row[5],
        status=row[6],
        last_seen=row[7],
        device_time=row[8],
        last_seq=row[9],
        readings=row[10],
        power_w=row[11],
        soc_pct=row[12],
        energy_wh_total=row[13],
        sessions_total=row[14],
        revenue_minor_total=row[15],
        currency=CURRENCY,
        rated_power_w=row[16],
        flagged=row[17],
    )


@router.get("", response_model=DevicePage, summary="Page of devices with current state")
async def list_devices(
    conn: Conn,
    pool: Annotated[
        str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_.-]+$", description="pool name")
    ] = None,
    type: Annotated[DeviceType | None, Query(description="device type")] = None,
    status: Annotated[
        str | None,
        Query(
            max_length=32,
            pattern=r"^[a-z_]+$",
            description="idle, charging, ..., or online / offline",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="from next_cursor")] = None,
) -> DevicePage:
    listing = pagination.Listing(
        f"SELECT {DEVICE_COLUMNS} FROM devices d LEFT JOIN device_state s USING (device_id)"
    )
    if pool is not None:
        listing.where("d.pool = %s", pool)
    if type is not None:
        listing.where("d.type = %s", type)
    if status in ("online", "offline"):
        listing.where("coalesce(s.online, false) = %s", status == "online")
    elif status is not None:
        listing.where("s.status = %s", status)
    listing.after("devices", cursor, "d.device_id > %s", (str,))
    rows, more = await listing.page(conn, "d.device_id", limit)
    items = [device_from_row(r) for r in rows]
    next_cursor = pagination.encode("devices", [items[-1].device_id]) if more else None
    return DevicePage(items=items, next_cursor=next_cursor)


@router.get(
    "/{device_id}",
    response_model=Device,
    summary="A device's current state",
    responses={404: {"description": "unknown device"}},
)
async def get_device(ctx: Context, device_id: DeviceId) -> Response:
    """The hot path: one prepared query, serialised once by the model (no second pass)."""
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(DEVICE_SQL, (device_id,), prepare=True)
        row = await cur.fetchone()
    if row is None:
        raise not_found("device", device_id)
    return Response(device_from_row(row).model_dump_json(), media_type="application/json")


def window(
    start: datetime | None, end: datetime | None, bucket: str
) -> tuple[datetime, datetime, timedelta]:
    """Aligned [start, end) for a bucket; 400 when reversed or too many points."""
    step = BUCKETS[bucket]
    end = _utc(end) if end is not None else datetime.now(UTC)
    start = _utc(start) if start is not None else end - timedelta(days=1)
    for name, t in (("start", start), ("end", end)):
        if not EPOCH <= t <= LATEST:
            raise bad_request(f"{name}: outside 1970-01-01 .. 9000-01-01")
    if start >= end:
        raise bad_request("start: must be before end")
    start, end = align(start, step), align(end, step, up=True)
    points = (end - start) // step
    if points > MAX_POINTS:
        raise bad_request(
            f"range/bucket: {points} points exceed {MAX_POINTS}; use a larger bucket "
            "or a shorter range"
        )
    return start, end, step


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


async def _known(conn: Conn, device_id: str) -> None:
    cur = await conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (device_id,))
    if await cur.fetchone() is None:
        raise not_found("device", device_id)


Start = Annotated[
    datetime | None,
    Query(description="RFC 3339; aligned down to the bucket; default end - 1 day"),
]
End = Annotated[
    datetime | None, Query(description="RFC 3339; aligned up to the bucket; default now")
]
Bucket = Annotated[BucketName, Query(description="bucket width")]


@dataclass(frozen=True)
class SeriesWindow:
    """A series request checked: a known device and an aligned window of buckets."""

    bucket: BucketName
    query: BucketQuery

    def header(self) -> dict[str, object]:
        """What a series response says about itself."""
        q = self.query
        return {"device_id": q.device_id, "bucket": self.bucket, "start": q.start, "end": q.end}


async def series_window(
    conn: Conn, device_id: DeviceId, start: Start = None, end: End = None, bucket: Bucket = "1h"
) -> SeriesWindow:
    """400 on a bad window, then 404 for an unknown device."""
    lo, hi, step = window(start, end, bucket)
    await _known(conn, device_id)
    return SeriesWindow(bucket, BucketQuery(device_id, lo, hi, step))


Series = Annotated[SeriesWindow, Depends(series_window)]


@router.get(
    "/{device_id}/telemetry",
    response_model=TelemetrySeries,
    summary="Time-bucketed energy, revenue, power and state of charge",
    responses={404: {"description": "unknown device"}},
)
async def telemetry(ctx: Context, conn: Conn, q: Series) -> Response:
    """Energy and revenue per bucket are meter differences at the bucket bounds (the oracle's
    rule, SPEC §7); power and state of charge are averages of the readings in the bucket."""
    buckets = await bucketed(ctx.store, conn, q.query, with_stats=True)
    points = [
        TelemetryPoint(
            start=b.start,
            end=b.end,
            energy_wh=b.energy_wh,
            revenue_minor=b.revenue_minor,
            readings=b.stats.readings if b.stats else 0,
            power_w_avg=b.stats.power_w_avg if b.stats else None,
            power_w_max=b.stats.power_w_max if b.stats else None,
            soc_pct_avg=b.stats.soc_pct_avg if b.stats else None,
        )
        for b in buckets
    ]
    series = TelemetrySeries(**q.header(), points=points)
    return Response(series.model_dump_json(), media_type="application/json")


@router.get(
    "/{device_id}/income",
    response_model=IncomeSeries,
    summary="Revenue per bucket (minor currency units)",
    responses={404: {"description": "unknown device"}},
)
async def income(ctx: Context, conn: Conn, q: Series) -> Response:
    """Revenue meter differences at the bucket bounds: inside an attested settlement period
    the meter as the oracle read it (its data cutoff, its used start and end values), so the
    buckets add up exactly to the device's attested figure, late readings included."""
    buckets = await income_buckets(ctx.store, conn, q.query)
    points = [IncomePoint(start=b.start, end=b.end, revenue_minor=b.revenue_minor) for b in buckets]
    series = IncomeSeries(
        **q.header(),
        currency=CURRENCY,
        total_minor=sum(p.revenue_minor for p in points),
        points=points,
    )
    return Response(series.model_dump_json(), media_type="application/json")


@router.get(
    "/{device_id}/readings",
    response_model=SignedReadingPage,
    summary="Signed readings: the evidence behind every figure, re-verifiable by anyone",
    responses={404: {"description": "unknown device"}},
)
async def readings(
    conn: Conn,
    device_id: DeviceId,
    start: Annotated[
        datetime | None, Query(description="RFC 3339, device time, inclusive; default 1970")
    ] = None,
    end: Annotated[
        datetime | None, Query(description="RFC 3339, device time, exclusive; default none")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="from next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> Response:
    """Each stored reading with the exact bytes the device signed and its signature, in
    device time order. Check one: `recover(EIP-191(payload), sig)` must be the device's
    signing address in the on-chain DeviceRegistry (at the reading's time)."""
    lo = _utc(start) if start is not None else EPOCH
    hi = _utc(end) if end is not None else LATEST
    for name, t in (("start", lo), ("end", hi)):
        if not EPOCH <= t <= LATEST:
            raise bad_request(f"{name}: outside 1970-01-01 .. 9000-01-01")
    if lo >= hi:
        raise bad_request("start: must be before end")
    after_us, after_seq = -1, -1
    if cursor is not None:
        after_us, after_seq = pagination.decode("readings", cursor, (int, int))
    after = EPOCH + timedelta(microseconds=after_us)
    await _known(conn, device_id)
    cur = await conn.execute(READINGS_SQL, (device_id, lo, hi, after, after_seq, limit + 1))
    rows = await cur.fetchall()
    items = [
        SignedReading(
            seq=seq,
            ts=ts,
            received_at=received_at,
            payload=bytes(signed).decode("utf-8") if signed else None,
            sig="0x" + bytes(sig).hex() if sig else None,
        )
        for seq, ts, received_at, signed, sig in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = pagination.encode("readings", [micros(last[1]), last[0]])
    page = SignedReadingPage(items=items, next_cursor=next_cursor)
    return Response(page.model_dump_json(), media_type="application/json")
