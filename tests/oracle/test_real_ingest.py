"""Signed readings through Mosquitto and the real ingest worker (duplicates, reordering and a
forged message mixed in), then the oracle: the epoch on-chain equals the meter differences
of what ingest stored, and every device's proof verifies."""

from __future__ import annotations

import os
import random
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from gridshare.core.chain.pools import register_devices
from gridshare.core.ids import text_id
from gridshare.core.payloads import format_ts
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.oracle.proofs import device_proof
from tests.ingest.fleet import Device, IngestProcess, Publisher, wait_until
from tests.oracle.conftest import make_pool
from tests.oracle.test_attestation_flow import reference_value

START = datetime(2026, 8, 1, tzinfo=UTC)
READINGS = 300  # 25 hours of 5-minute readings: day 1 closes


def test_epoch_from_readings_stored_by_ingest(
    stack_settings: Settings,
    stack_env: dict[str, str],
    ctx: OracleContext,
    db: psycopg.Connection,
    tmp_path: Path,
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=0)
    devices = [Device(f"cp-i{secrets.token_hex(3)}-{i}", os.urandom(32)) for i in range(3)]
    for device in devices:
        db.execute(
            "INSERT INTO devices (device_id, type, pool, address) VALUES (%s, %s, %s, %s)",
            (device.device_id, "charging_pile", pool.name, address_for_key(device.key)),
        )
    register_devices(
        stack_settings, [(d.device_id, address_for_key(d.key), pool.name) for d in devices]
    )
    rng = random.Random(5)
    messages = []
    for device in devices:
        energy = rng.randrange(10**6)
        for seq in range(1, READINGS + 1):
            energy += rng.randrange(0, 2_000)
            moment = START + timedelta(seconds=300 * (seq - 1) + rng.randrange(0, 30))
            payload = device.reading(
                seq,
                ts=format_ts(moment),
                energy_wh_total=energy,
                revenue_minor_total=energy * 45 // 100,
            )
            messages.append((device.topic, payload))
    messages += rng.sample(messages, 30)  # redelivered duplicates
    rng.shuffle(messages)  # arrival order is not device order
    forged = devices[0].reading(READINGS + 1, energy_wh_total=10**12, revenue_minor_total=10**12)
    messages.append((devices[0].topic, forged[:-10] + b'0000000"}'))

    worker = IngestProcess(stack_env, tmp_path, f"o-{secrets.token_hex(3)}", "--retire")
    worker.start()
    publisher = Publisher(stack_settings)
    try:
        for topic, payload in messages:
            publisher.publish(topic, payload)
        publisher.flush()
        wait_until(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM telemetry WHERE device_id = ANY(%s)",
                    ([d.device_id for d in devices],),
                ).fetchone()[0]
                == READINGS * len(devices)
            ),
            60,
            "ingest stored every reading once",
        )
    finally:
        publisher.close()
        worker.stop()

    outcome = attest_next(ctx, pool.name)
    assert outcome.status == "confirmed", outcome.message
    end = START + timedelta(days=1)
    energy = revenue = 0
    for device in devices:
        series = db.execute(
            "SELECT time, energy_wh_total, revenue_minor_total FROM telemetry"
            " WHERE device_id = %s ORDER BY time",
            (device.device_id,),
        ).fetchall()
        e = [(t, int(v)) for t, v, _ in series]
        r = [(t, int(v)) for t, _, v in series]
        energy += reference_value(e, end) - e[0][1]
        revenue += reference_value(r, end) - r[0][1]
    pid = text_id(pool.name)
    onchain = ctx.client.call(ctx.registry.functions.attestation(pid, 1))
    assert (onchain[4], onchain[5], onchain[6]) == (energy, revenue, revenue * pool.share_bps)
    for device in devices:
        proof = device_proof(db, pool.name, 1, device.device_id)
        assert proof is not None and proof.leaf.readings == 288
        assert ctx.client.call(
            ctx.registry.functions.verifyLeaf(pid, 1, proof.leaf_hash, proof.proof)
        )
