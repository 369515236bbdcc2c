"""Telemetry in a currency other than its pool's is quarantined as `wrong_currency`: summing
it with the pool's revenue would mix units."""

from __future__ import annotations

from tests.ingest.fleet import quarantined, register, stored, wait_until


def test_reading_in_another_currency_is_quarantined(conn, ingest_worker, publisher):
    device, other = register(conn, 2)
    ingest_worker()
    usd = device.reading(1, currency="USD")  # signed by the device: authentic, wrong unit
    publisher.publish(device.topic, usd)
    publisher.publish(other.topic, other.reading(1))
    publisher.flush()
    rows = wait_until(lambda: quarantined(conn, device.device_id), 30, "quarantine")
    assert [(r[0], bytes(r[2])) for r in rows] == [("wrong_currency", usd)]
    assert "USD" in rows[0][1] and "HKD" in rows[0][1]
    wait_until(lambda: stored(conn, [other])[0] == 1, 10, "the HKD reading")
    assert stored(conn, [device]) == (0, 0)
