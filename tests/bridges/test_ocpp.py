"""The OCPP bridge against the `ocpp` library's own ChargePoint clients (1.6J and 2.0.1),
through Mosquitto and the real ingest worker into the telemetry table."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import websockets
from fastapi.testclient import TestClient
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.exceptions import InvalidStatus

from gridshare.api.main import create_app
from gridshare.core import stack
from gridshare.core.payloads import format_ts
from gridshare.core.settings import Settings
from gridshare.gateway.ocpp import ProvisionedCharger, provision_ocpp, set_tariff
from gridshare.oracle.aggregator import attest_next
from tests.bridges.conftest import TARIFF, ocpp_process
from tests.bridges.peers import BridgeProcess, basic, connect
from tests.ingest.fleet import GRIDSHARE, wait_until
from tests.oracle.conftest import make_pool

OCMF = 'OCMF|{"FV":"1.0","GI":"bench","RD":[{"TM":"2026-12-01T10:00:00,000+0000 S","RV":1.0}]}|{"SD":"3045"}'  # noqa: E501
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def ts(seconds: float) -> str:
    return format_ts(T0 + timedelta(seconds=seconds))


def energy(wh: float, unit: str = "Wh", signed: bool = False) -> dict[str, Any]:
    value: dict[str, Any] = {
        "value": wh,
        "measurand": "Energy.Active.Import.Register",
        "unit_of_measure": {"unit": unit},
    }
    if signed:
        value["signed_meter_value"] = {
            "signed_meter_data": OCMF,
            "signing_method": "ECDSA-secp256r1-SHA256",
            "encoding_method": "OCMF",
            "public_key": "3059301306072a8648ce3d0201",
        }
    return value


def event(kind: str, seconds: float, seq_no: int, wh: float, **extra: Any) -> Any:
    return call201.TransactionEvent(
        event_type=kind,
        timestamp=ts(seconds),
        trigger_reason="MeterValuePeriodic" if kind == "Updated" else "CablePluggedIn",
        seq_no=seq_no,
        transaction_info={"transaction_id": "tx-1", "charging_state": "Charging"},
        evse={"id": 1, "connector_id": 1},
        meter_value=[{"timestamp": ts(seconds), "sampled_value": [energy(wh, **extra)]}],
    )


def rows(conn: psycopg.Connection, device_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT seq, time, energy_wh_total, revenue_minor_total, sessions_total, status"
        " FROM telemetry WHERE device_id = %s ORDER BY seq",
        (device_id,),
    ).fetchall()


def wait_rows(conn: psycopg.Connection, device_id: str, count: int) -> list[tuple]:
    wait_until(lambda: len(rows(conn, device_id)) >= count, 30, f"{count} readings stored")
    return rows(conn, device_id)


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}"


def test_ocpp201_session_with_signed_meter_values(
    ocpp_bridge: BridgeProcess,
    bridge_port: int,
    charger: ProvisionedCharger,
    conn,
    stack_settings: Settings,
) -> None:
    async def session() -> None:
        cp = await connect(url(bridge_port), charger.charger_id, charger.password)
        boot = await cp.cp.call(
            call201.BootNotification(
                charging_station={"model": "Bench", "vendor_name": "gridshare"},
                reason="PowerUp",
            )
        )
        assert boot.status == "Accepted"
        await cp.cp.call(
            call201.StatusNotification(
                timestamp=ts(0), connector_status="Available", evse_id=1, connector_id=1
            )
        )
        await cp.cp.call(event("Started", 10, 0, 1000, signed=True))
        await cp.cp.call(event("Updated", 70, 1, 4.5, unit="kWh"))
        await cp.cp.call(event("Ended", 130, 2, 8000, signed=True))
        await cp.close()

    asyncio.run(session())
    stored = wait_rows(conn, charger.device_id, 3)
    assert [r[2] for r in stored] == [0, 3500, 7000]
    assert stored[-1][3] == 7000 * TARIFF // 1000
    assert stored[-1][4] == 1  # one session
    assert stored[0][5] == "charging" and stored[-1][5] == "idle"
    evidence = conn.execute(
        "SELECT seq, format, signed_data FROM reading_evidence WHERE device_id = %s ORDER BY seq",
        (charger.device_id,),
    ).fetchall()
    assert [(e[0], e[1], e[2]) for e in evidence] == [
        (stored[0][0], "OCMF", OCMF),
        (stored[2][0], "OCMF", OCMF),
    ]
    with TestClient(create_app(stack_settings)) as client:
        page = client.get(f"/v1/devices/{charger.device_id}/evidence").json()
        assert [(i["seq"], i["format"], i["signed_data"]) for i in page["items"]] == evidence
        one = client.get(f"/v1/devices/{charger.device_id}/evidence?seq={stored[2][0]}").json()
        assert [i["public_key"] for i in one["items"]] == ["3059301306072a8648ce3d0201"]
        assert client.get("/v1/devices/cp-nope/evidence").status_code == 404


def test_ocpp16_session(
    ocpp_bridge: BridgeProcess, bridge_port: int, charger: ProvisionedCharger, conn
) -> None:
    async def session() -> None:
        cp = await connect(url(bridge_port), charger.charger_id, charger.password, "1.6")
        boot = await cp.cp.call(
            call16.BootNotification(charge_point_model="Bench", charge_point_vendor="gridshare")
        )
        assert boot.status == "Accepted"
        await cp.cp.call(call16.Heartbeat())
        start = await cp.cp.call(
            call16.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=500, timestamp=ts(5))
        )
        assert start.transaction_id == 1
        values = [
            {
                "timestamp": ts(65),
                "sampledValue": [
                    {"value": "2.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
                    {"value": "7.2", "unit": "kW", "measurand": "Power.Active.Import"},
                    {"value": OCMF, "format": "SignedData"},
                ],
            }
        ]
        await cp.cp.call(call16.MeterValues(connector_id=1, transaction_id=1, meter_value=values))
        await cp.cp.call(
            call16.StopTransaction(meter_stop=4500, timestamp=ts(125), transaction_id=1)
        )
        again = await cp.cp.call(
            call16.StartTransaction(
                connector_id=1, id_tag="TAG1", meter_start=4500, timestamp=ts(200)
            )
        )
        assert again.transaction_id == 2
        await cp.close()

    asyncio.run(session())
    stored = wait_rows(conn, charger.device_id, 4)
    assert [r[2] for r in stored] == [0, 2000, 4000, 4000]
    assert [r[4] for r in stored] == [1, 1, 1, 2]
    assert stored[-1][3] == 4000 * TARIFF // 1000
    power = conn.execute(
        "SELECT power_w FROM telemetry WHERE device_id = %s AND seq = %s",
        (charger.device_id, stored[1][0]),
    ).fetchone()[0]
    assert power == 7200


def test_wrong_password_and_unknown_charger_are_refused(
    ocpp_bridge: BridgeProcess, bridge_port: int, charger: ProvisionedCharger
) -> None:
    async def attempt(charger_id: str, user: str, password: str) -> int:
        try:
            ws = await websockets.connect(
                f"{url(bridge_port)}/{charger_id}",
                subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                additional_headers=basic(user, password),
            )
        except InvalidStatus as exc:
            return exc.response.status_code
        await ws.close()
        return 101

    async def all_attempts() -> list[int]:
        return [
            await attempt(charger.charger_id, charger.charger_id, "wrong"),
            await attempt("NoSuchCharger", "NoSuchCharger", charger.password),
            await attempt(charger.charger_id, "NoSuchCharger", charger.password),
            await attempt(charger.charger_id, charger.charger_id, charger.password),
        ]

    assert asyncio.run(all_attempts()) == [401, 401, 401, 101]


def test_malformed_frame_gets_callerror_and_others_are_served(
    ocpp_bridge: BridgeProcess,
    bridge_port: int,
    stack_settings: Settings,
    charger: ProvisionedCharger,
) -> None:
    other = provision_ocpp(stack_settings, charger.pool, charger.charger_id + "b", chain=False)

    async def session() -> None:
        healthy = await connect(url(bridge_port), other.charger_id, other.password)
        ws = await websockets.connect(
            f"{url(bridge_port)}/{charger.charger_id}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic(charger.charger_id, charger.password),
        )
        await ws.send("this is not json")
        assert json.loads(await ws.recv())[:3] == [4, "-1", "FormatViolation"]
        await ws.send(json.dumps([2, "m-1", "Heartbeat", {"unexpected": 1}]))
        reply = json.loads(await ws.recv())
        assert reply[0] == 4 and reply[1] == "m-1"
        await ws.send(json.dumps([2, "m-2", "Heartbeat", {}]))
        assert json.loads(await ws.recv())[:2] == [3, "m-2"]
        await ws.close()
        beat = await healthy.cp.call(call201.Heartbeat())
        assert beat.current_time
        await healthy.close()

    asyncio.run(session())


def test_dropped_charger_replays_queue_stored_once(
    ocpp_bridge: BridgeProcess, bridge_port: int, charger: ProvisionedCharger, conn
) -> None:
    queue = [event("Started", 10, 0, 100)] + [
        event("Updated", 10 + 60 * i, i, 100 + 500 * i) for i in range(1, 6)
    ]

    async def first() -> None:
        cp = await connect(url(bridge_port), charger.charger_id, charger.password)
        for message in queue[:4]:
            await cp.cp.call(message)
        cp.task.cancel()
        cp.ws.transport.abort()  # the link drops; no closing handshake

    async def replay() -> None:
        cp = await connect(url(bridge_port), charger.charger_id, charger.password)
        for message in queue:  # offline queue sent again from the start, then the rest
            await cp.cp.call(message)
        await cp.close()

    asyncio.run(first())
    asyncio.run(replay())
    wait_rows(conn, charger.device_id, 6)
    time.sleep(1.0)  # room for a second copy to arrive, if there were one
    stored = rows(conn, charger.device_id)
    assert len(stored) == 6
    assert [r[1] for r in stored] == [T0 + timedelta(seconds=10 + 60 * i) for i in range(6)]
    assert stored[-1][2] == 2500


def test_charger_readings_are_attested(
    ocpp_bridge: BridgeProcess, bridge_port: int, stack_settings: Settings, ctx, conn
) -> None:
    """A 1.6 charger in a pool on-chain: its day of charging becomes the pool's epoch."""
    pool = make_pool(stack_settings, conn, "charging_pile", devices=0)
    set_tariff(stack_settings, pool.name, TARIFF)
    charger = provision_ocpp(stack_settings, pool.name, f"A{pool.name[-3:]}")
    day = (T0 - timedelta(days=3)).replace(hour=0, minute=0, second=0)

    def at(hours: float) -> str:
        return format_ts(day + timedelta(hours=hours))

    async def session() -> None:
        cp = await connect(url(bridge_port), charger.charger_id, charger.password, "1.6")
        start = await cp.cp.call(
            call16.StartTransaction(connector_id=1, id_tag="T", meter_start=2000, timestamp=at(1))
        )
        values = [{"timestamp": at(2), "sampledValue": [{"value": "9200", "unit": "Wh"}]}]
        await cp.cp.call(call16.MeterValues(connector_id=1, meter_value=values))
        await cp.cp.call(
            call16.StopTransaction(
                meter_stop=16400, timestamp=at(3), transaction_id=start.transaction_id
            )
        )
        idle = [{"timestamp": at(25), "sampledValue": [{"value": "16400", "unit": "Wh"}]}]
        await cp.cp.call(call16.MeterValues(connector_id=1, meter_value=idle))
        await cp.close()

    asyncio.run(session())
    wait_rows(conn, charger.device_id, 4)
    outcome = attest_next(ctx, pool.name, force=True)
    assert outcome.status == "confirmed", outcome.message
    energy, revenue, devices = conn.execute(
        "SELECT energy_wh, revenue_minor, device_count FROM oracle_epochs"
        " WHERE pool = %s AND epoch = 1",
        (pool.name,),
    ).fetchone()
    assert (int(energy), int(revenue), devices) == (14400, 14400 * TARIFF // 1000, 1)


def test_provision_ocpp_command_prints_a_working_password(
    ocpp_bridge: BridgeProcess, bridge_port: int, stack_env: dict[str, str], cp_pool: str
) -> None:
    charger_id = f"C{os.urandom(4).hex()}"
    args = ["devices", "provision-ocpp", "--pool", cp_pool, "--charger-id", charger_id]
    done = subprocess.run(
        [GRIDSHARE, *args, "--skip-chain"], env=stack_env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    password = done.stdout.strip().splitlines()[-1]

    async def boot() -> str:
        cp = await connect(url(bridge_port), charger_id, password, "1.6")
        answer = await cp.cp.call(
            call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
        )
        await cp.close()
        return answer.status

    assert asyncio.run(boot()) == "Accepted"
    refused = subprocess.run(
        [GRIDSHARE, "devices", "provision-ocpp", "--pool", cp_pool, "--charger-id", "bad id!"],
        env=stack_env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "charger id" in refused.stderr


@pytest.mark.slow
def test_bridge_killed_before_answering_retry_stored_once(
    stack_settings: Settings,
    stack_env: dict[str, str],
    ocpp_bridge: BridgeProcess,
    bridge_port: int,
    charger: ProvisionedCharger,
    conn,
    tmp_path,
) -> None:
    """The broker is frozen (SIGSTOP) so the bridge has received and published the reading
    but cannot have answered; kill -9 the bridge, thaw the broker (which takes the publish),
    restart the bridge: the charger's retry becomes a duplicate, stored once."""
    broker = next(s for s in stack.services(stack_settings) if s.name == "mosquitto")
    broker_pid = broker.process.pid()
    assert broker_pid is not None
    first = event("Started", 10, 0, 100)
    killed = event("Updated", 70, 1, 900)
    after = event("Updated", 130, 2, 1500)

    async def until_killed() -> bool:
        cp = await connect(url(bridge_port), charger.charger_id, charger.password)
        await cp.cp.call(first)  # the bridge's broker session for this device is up
        os.kill(broker_pid, signal.SIGSTOP)
        try:
            call = asyncio.ensure_future(cp.cp.call(killed))
            await asyncio.sleep(1.5)  # received and published; the PUBACK cannot come
            answered = call.done()
            ocpp_bridge.kill()
        finally:
            os.kill(broker_pid, signal.SIGCONT)
        call.cancel()
        await cp.close()
        return answered

    async def retry() -> None:
        cp = await connect(url(bridge_port), charger.charger_id, charger.password)
        await cp.cp.call(killed)
        await cp.cp.call(after)
        await cp.close()

    answered = asyncio.run(until_killed())
    restarted = ocpp_process(stack_env, tmp_path / "ocpp-restarted.log", bridge_port)
    restarted.start("ocpp bridge listening")
    try:
        asyncio.run(retry())
        wait_rows(conn, charger.device_id, 3)
        time.sleep(1.0)
        stored = rows(conn, charger.device_id)
    finally:
        restarted.stop()
        ocpp_bridge.proc = None
    assert not answered
    assert [r[1] for r in stored] == [T0 + timedelta(seconds=t) for t in (10, 70, 130)]
    assert [r[2] for r in stored] == [0, 800, 1400]
    duplicates = conn.execute(
        "SELECT count(*) FROM quarantine WHERE device_id = %s", (charger.device_id,)
    ).fetchone()[0]
    assert duplicates == 0  # the retry was the same signed bytes: a duplicate, not a conflict
