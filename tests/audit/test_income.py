"""The API's income buckets add up to the attested figures: late readings (paid in the next
epoch as its adjustment) and an excluded device (paid once cleared) included."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from fastapi.testclient import TestClient

from gridshare.core.settings import Settings
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.oracle.leaves import DeviceLeaf
from tests.oracle.conftest import T0, insert_readings, make_pool

DAY = timedelta(days=1)


def attested_revenue(db: psycopg.Connection, pool: str, epoch: int, device: str) -> int:
    (data,) = db.execute(
        "SELECT leaf_data FROM oracle_leaves WHERE pool = %s AND epoch = %s AND device_id = %s",
        (pool, epoch, device),
    ).fetchone()
    return DeviceLeaf.from_signing_bytes(pool, device, bytes(data)).revenue_minor


def income(client: TestClient, device: str, start, end, bucket: str) -> int:
    body = client.get(
        f"/v1/devices/{device}/income",
        params={"start": start.isoformat(), "end": end.isoformat(), "bucket": bucket},
    )
    assert body.status_code == 200, body.text
    return sum(p["revenue_minor"] for p in body.json()["points"])


def test_income_over_attested_epochs_equals_the_attested_figures(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection, client: TestClient
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=3)
    late, flagged, steady = pool.devices
    insert_readings(db, steady, T0, T0 + 1.05 * DAY)
    insert_readings(db, flagged, T0, T0 + 1.05 * DAY, offset=7)
    insert_readings(db, late, T0, T0 + timedelta(hours=12), offset=11)  # then disconnected
    db.execute(
        "INSERT INTO device_flags (device_id, reason, detail) VALUES (%s, 'conflicting_reading',"
        " 'test')",
        (flagged,),
    )
    assert attest_next(ctx, pool.name).status == "confirmed"
    db.execute(
        "UPDATE device_flags SET cleared_at = now(), cleared_by = 'test', clear_reason = 'ok'"
        " WHERE device_id = %s",
        (flagged,),
    )
    # the late device replays its buffer; everyone reports through day 2
    insert_readings(db, late, T0 + timedelta(hours=12), T0 + 2.05 * DAY, offset=11)
    insert_readings(db, steady, T0 + 1.05 * DAY, T0 + 2.05 * DAY)
    insert_readings(db, flagged, T0 + 1.05 * DAY, T0 + 2.05 * DAY, offset=7)
    assert attest_next(ctx, pool.name).status == "confirmed"

    assert attested_revenue(db, pool.name, 1, flagged) == 0
    for device in pool.devices:
        for epoch, (start, end) in enumerate([(T0, T0 + DAY), (T0 + DAY, T0 + 2 * DAY)], 1):
            want = attested_revenue(db, pool.name, epoch, device)
            for bucket in ("1h", "6h"):
                assert income(client, device, start, end, bucket) == want, (device, epoch)
        both = income(client, device, T0, T0 + 2 * DAY, "1h")
        assert both == sum(attested_revenue(db, pool.name, e, device) for e in (1, 2))
    # the late readings are paid in epoch 2, not rewritten into epoch 1
    assert income(client, late, T0, T0 + DAY, "1h") < income(client, steady, T0, T0 + DAY, "1h")
