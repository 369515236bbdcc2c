"""`gridshare audit` as an investor runs it: a child process that reads only the public API
and the chain. An honest epoch passes; a stored reading changed after attestation is named
with its device and field; a rewritten signed payload fails its signature and the recomputed
leaf field."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import psycopg

from gridshare.core.settings import Settings
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from tests.api.conftest import GRIDSHARE
from tests.oracle.conftest import T0, fill, make_pool

DAY = timedelta(days=1)


def audit(server: str, settings: Settings, pool: str, epoch: int, *extra: str) -> tuple[int, str]:
    """Run the command with no database and no state dir in its environment."""
    env = {"PATH": "/usr/bin:/bin", "GRIDSHARE_STATE_DIR": "/nonexistent"}
    done = subprocess.run(
        [
            GRIDSHARE,
            "audit",
            "--pool",
            pool,
            "--epoch",
            str(epoch),
            "--api",
            server,
            "--rpc",
            settings.rpc_url,
            "--json",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def last_reading_before(db: psycopg.Connection, device: str, moment) -> int:
    row = db.execute(
        "SELECT seq FROM telemetry WHERE device_id = %s AND time < %s ORDER BY time DESC LIMIT 1",
        (device, moment),
    ).fetchone()
    assert row is not None
    return row[0]


def test_audit_passes_then_names_the_device_and_field_of_a_changed_reading(
    stack_settings: Settings, ctx: OracleContext, db: psycopg.Connection, server: str
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=3)
    fill(db, pool, 2.05)
    assert attest_next(ctx, pool.name).status == "confirmed"
    assert attest_next(ctx, pool.name).status == "confirmed"

    code, out = audit(server, stack_settings, pool.name, 2)
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] and len(report["devices"]) == 3
    assert all(d["signatures_verified"] >= 4 for d in report["devices"])
    code, out = audit(server, stack_settings, pool.name, 1, "--device", pool.devices[0])
    assert code == 0, out

    # after attestation, the database's copy of a reading that determines a leaf changes
    victim, forged = pool.devices[1], pool.devices[2]
    seq = last_reading_before(db, victim, T0 + 2 * DAY)
    db.execute(
        "UPDATE telemetry SET revenue_minor_total = revenue_minor_total + 999"
        " WHERE device_id = %s AND seq = %s",
        (victim, seq),
    )
    # and someone rewrites the signed bytes of another device's reading
    seq2 = last_reading_before(db, forged, T0 + 2 * DAY)
    db.execute(
        """UPDATE telemetry SET energy_wh_total = energy_wh_total + 5000,
               signed_bytes = convert_to(regexp_replace(convert_from(signed_bytes, 'UTF8'),
                   '"energy_wh_total":([0-9]+)',
                   '"energy_wh_total":' || (energy_wh_total + 5000)::text), 'UTF8')
           WHERE device_id = %s AND seq = %s""",
        (forged, seq2),
    )
    code, out = audit(server, stack_settings, pool.name, 2)
    assert code == 1, out
    by_device = {d["device_id"]: d for d in json.loads(out)["devices"]}
    assert by_device[pool.devices[0]]["ok"]
    problems = " | ".join(by_device[victim]["problems"])
    assert f"seq {seq}: revenue_minor_total stored" in problems
    problems = " | ".join(by_device[forged]["problems"])
    assert "bad_signature" in problems and "endEnergyWh" in problems

    code, out = audit(server, stack_settings, pool.name, 2, "--device", victim)
    assert code == 1 and "revenue_minor_total" in out
    plain = subprocess.run(
        [
            GRIDSHARE,
            "audit",
            "--pool",
            pool.name,
            "--epoch",
            "2",
            "--api",
            server,
            "--rpc",
            stack_settings.rpc_url,
        ],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert plain.returncode == 1
    assert f"{victim}: reading_mismatch: seq {seq}: revenue_minor_total" in plain.stdout
    assert f"{pool.devices[0]}: ok" in plain.stdout and "FAILED: 2 devices" in plain.stdout
