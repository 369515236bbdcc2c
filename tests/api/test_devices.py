"""Device endpoints over readings stored by the real ingest worker."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from gridshare.api.readings import BucketQuery, HourlyReadings, RawReadings, bucketed
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key, recover
from tests.api.data import DAY0, Fleet, meter_at


def test_device_state_fields(client: TestClient, fleet: Fleet) -> None:
    device = fleet.devices[0]
    last = fleet.readings[device.device_id][-1]
    body = client.get(f"/v1/devices/{device.device_id}").json()
    assert body["device_id"] == device.device_id
    assert body["type"] == "charging_pile"
    assert body["pool"] == fleet.pool
    assert body["online"] is True
    assert body["status"] == "charging"
    assert body["last_seq"] == last.seq
    assert body["readings"] == len(fleet.readings[device.device_id])
    assert body["energy_wh_total"] == last.energy_wh
    assert body["revenue_minor_total"] == last.revenue_minor
    assert body["soc_pct"] == float(last.seq % 100)
    assert body["power_w"] == float(1000 + last.seq % 7000)
    assert body["last_seen"] is not None
    assert body["device_time"].startswith(last.time.strftime("%Y-%m-%dT%H:%M:%S"))
    assert body["rated_power_w"] == 150_000  # the charging pile's default
    assert body["flagged"] is False


def test_unknown_device_is_404_in_the_error_shape(client: TestClient) -> None:
    res = client.get("/v1/devices/cp-doesnotexist")
    assert res.status_code == 404
    assert res.json()["error"]["code"] == "not_found"
    assert "cp-doesnotexist" in res.json()["error"]["message"]
    assert client.get("/v1/devices/cp-doesnotexist/income").status_code == 404


def test_device_pages_follow_the_cursor(client: TestClient, fleet: Fleet) -> None:
    seen, cursor = [], None
    for _ in range(10):
        params = {"pool": fleet.pool, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/devices", params=params).json()
        seen += [d["device_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(d.device_id for d in fleet.devices)
    online = client.get("/v1/devices", params={"pool": fleet.pool, "status": "online"}).json()
    assert len(online["items"]) == len(fleet.devices)


def test_bad_parameters_are_400(client: TestClient, fleet: Fleet) -> None:
    device = fleet.devices[0].device_id
    cases = [
        ("/v1/devices", {"limit": 0}),
        ("/v1/devices", {"cursor": "not-a-cursor"}),
        ("/v1/devices", {"type": "toaster"}),
        ("/v1/devices", {"pool": "nul\x00byte"}),  # PostgreSQL text cannot hold NUL: 400, not 500
        ("/v1/pools/nul%00byte", {}),
        ("/v1/devices", {"cursor": "WyJkZXZpY2VzIiwiYVx1MDAwMGIiXQ"}),  # ["devices","a\u0000b"]
        (f"/v1/devices/{device}/income", {"bucket": "7m"}),
        (f"/v1/devices/{device}/income", {"start": "yesterday"}),
        (
            f"/v1/devices/{device}/income",
            {"start": "2026-11-21T00:00:00Z", "end": "2026-11-20T00:00:00Z"},
        ),
        # 30 days of 5-minute buckets: 8640 points, over the bound
        (
            f"/v1/devices/{device}/telemetry",
            {"start": "2026-10-01T00:00:00Z", "end": "2026-10-31T00:00:00Z", "bucket": "5m"},
        ),
    ]
    for path, params in cases:
        res = client.get(path, params=params)
        assert res.status_code == 400, (path, params, res.text)
        assert res.json()["error"]["code"] == "bad_request"
        assert res.json()["error"]["message"]


def test_income_buckets_are_meter_differences_at_the_bounds(
    client: TestClient, fleet: Fleet
) -> None:
    """Every bucket against an independent evaluation of SPEC §7's rule."""
    device = fleet.devices[1]
    readings = fleet.readings[device.device_id]
    start, end = DAY0 + timedelta(hours=3), DAY0 + timedelta(hours=9)
    for bucket, step in (
        ("5m", timedelta(minutes=5)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
    ):
        body = client.get(
            f"/v1/devices/{device.device_id}/income",
            params={"start": start.isoformat(), "end": end.isoformat(), "bucket": bucket},
        ).json()
        assert len(body["points"]) == (end - start) // step
        for point in body["points"]:
            lo = meter_at(readings, DAY0.fromisoformat(point["start"]))
            hi = meter_at(readings, DAY0.fromisoformat(point["end"]))
            assert point["revenue_minor"] == hi[1] - lo[1], (bucket, point)
        assert body["total_minor"] == meter_at(readings, end)[1] - meter_at(readings, start)[1]


def test_telemetry_series_has_energy_revenue_power_soc(client: TestClient, fleet: Fleet) -> None:
    device = fleet.devices[2]
    readings = fleet.readings[device.device_id]
    start, end = DAY0, DAY0 + timedelta(days=1)
    body = client.get(
        f"/v1/devices/{device.device_id}/telemetry",
        params={"start": start.isoformat(), "end": end.isoformat(), "bucket": "6h"},
    ).json()
    assert body["points"][0]["start"] == "2026-11-20T00:00:00Z"
    assert len(body["points"]) == 4
    assert sum(p["energy_wh"] for p in body["points"]) == (
        meter_at(readings, end)[0] - meter_at(readings, start)[0]
    )
    in_range = [r for r in readings if start <= r.time < end]
    assert sum(p["readings"] for p in body["points"]) == len(in_range)
    first = body["points"][0]
    quarter = [r for r in in_range if r.time < start + timedelta(hours=6)]
    assert (
        abs(first["power_w_avg"] - sum(1000 + r.seq % 7000 for r in quarter) / len(quarter)) < 1e-6
    )
    assert first["soc_pct_avg"] is not None


def test_unaligned_range_is_snapped_to_the_bucket(client: TestClient, fleet: Fleet) -> None:
    device = fleet.devices[0].device_id
    body = client.get(
        f"/v1/devices/{device}/income",
        params={"start": "2026-11-20T01:20:00Z", "end": "2026-11-20T03:10:00Z", "bucket": "1h"},
    ).json()
    assert body["start"] == "2026-11-20T01:00:00Z"
    assert body["end"] == "2026-11-20T04:00:00Z"
    assert len(body["points"]) == 3


def test_both_reading_stores_give_the_same_buckets(stack_settings: Settings, fleet: Fleet) -> None:
    """The raw-table and hourly-aggregate implementations behind one interface agree (on plain
    PostgreSQL the aggregate is the `telemetry_hourly` view, on TimescaleDB the continuous
    aggregate with real-time rows)."""

    async def compare() -> None:
        async with await psycopg.AsyncConnection.connect(stack_settings.db_url) as conn:
            for device in fleet.devices:
                for step in (timedelta(hours=1), timedelta(hours=6), timedelta(days=1)):
                    start, end = DAY0 - timedelta(days=1), DAY0 + timedelta(days=3)
                    query = BucketQuery(device.device_id, start, end, step)
                    raw = await bucketed(RawReadings(), conn, query, True)
                    hourly = await bucketed(HourlyReadings(), conn, query, True)
                    assert [(b.start, b.energy_wh, b.revenue_minor) for b in raw] == [
                        (b.start, b.energy_wh, b.revenue_minor) for b in hourly
                    ]
                    for a, b in zip(raw, hourly, strict=True):
                        assert (a.stats is None) == (b.stats is None)
                        if a.stats and b.stats:
                            assert a.stats.readings == b.stats.readings
                            assert a.stats.power_w_avg == pytest.approx(b.stats.power_w_avg)
                            assert a.stats.power_w_max == b.stats.power_w_max
                            assert a.stats.soc_pct_avg == pytest.approx(b.stats.soc_pct_avg)

    asyncio.run(compare())


def test_signed_readings_recover_to_the_device_and_page_in_time_order(
    client: TestClient, fleet: Fleet
) -> None:
    device = fleet.devices[0]
    published = fleet.readings[device.device_id]
    address = address_for_key(device.key)
    path = f"/v1/devices/{device.device_id}/readings"
    seen, cursor = [], None
    while True:
        page = client.get(path, params={"limit": 50, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        for item in page.json()["items"]:
            assert recover(item["payload"].encode("utf-8"), item["sig"]) == address
            signed = json.loads(item["payload"])
            assert (signed["seq"], "sig" in signed) == (item["seq"], False)
            assert item["ts"].startswith(signed["ts"].removesuffix("Z")[:19])
            assert item["received_at"]
        seen += [item["seq"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [r.seq for r in published]

    start, end = DAY0, DAY0 + timedelta(days=1)
    body = client.get(path, params={"start": start.isoformat(), "end": end.isoformat()}).json()
    assert [i["seq"] for i in body["items"]] == [r.seq for r in published if start <= r.time < end]
    assert body["next_cursor"] is None

    assert client.get("/v1/devices/cp-doesnotexist/readings").status_code == 404
    for params in (
        {"cursor": "not-a-cursor"},
        {"start": end.isoformat(), "end": start.isoformat()},
    ):
        res = client.get(path, params=params)
        assert res.status_code == 400 and res.json()["error"]["code"] == "bad_request"
    assert "/v1/devices/{device_id}/readings" in client.get("/openapi.json").json()["paths"]
