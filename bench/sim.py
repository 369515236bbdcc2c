"""Fleet simulator: publish+PUBACK throughput, memory, connect time; provisioning time.

On a private PostgreSQL, Mosquitto and Anvil (free ports, temporary state dir):

- `fleets.{1000,10000}`: ephemeral devices (each its own MQTT connection and login) running
  as fast as they can (`speed` so high that every reading is due at once): messages published
  and acknowledged per second after the connect phase, connect time for all devices, peak RSS
  and CPU seconds per message of the simulator process (each fleet in its own process);
- `paced_10000`: 10,000 devices on their real schedule (one reading per 300 s of sim time) at
  a speed that asks for `PACED_RATE` msg/s: whether the simulator keeps up (rate, lag);
- `provision_10000`: `provision()` of 3 pools x 3,334 devices: keys, database rows and broker
  logins (one SIGHUP), then the chain step (token per pool, registration in batches);
- `mqtt_client_cpu_ms_per_publish`: why the simulator has its own MQTT client: CPU per QoS 1
  publish+PUBACK over one connection (20 in flight, 380-byte payloads), paho-mqtt 2 with its
  network thread against `gridshare.sim.mqtt` on uvloop, same broker, same run.

The machine is shared (2 cores, broker and simulator on it together); `load_average` is
recorded beside the figures. Prints JSON and writes bench/results/sim.json.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime

FLEETS = {1_000: 20, 10_000: 8}  # devices: readings each in the saturating run
CLIENT_MESSAGES = 20_000
PAYLOAD = b"x" * 380
TOPIC = "gridshare/v1/devices/cp-000001/telemetry"
PACED_DEVICES, PACED_RATE, PACED_WALL_S = 10_000, 2_000.0, 30.0
INTERVAL = 300.0
START = datetime(2026, 11, 1, tzinfo=UTC)


def child(settings_json: str, devices: int, speed: float, duration: float) -> None:
    """One fleet run in this process; prints its figures as JSON."""
    from gridshare.core.settings import Settings
    from gridshare.gateway.provision import provision_ephemeral
    from gridshare.sim.fleet import Fleet

    settings = Settings.model_validate_json(settings_json)
    started = time.monotonic()
    identities = provision_ephemeral(settings, devices)
    provisioned = time.monotonic() - started
    cpu_before = _cpu()
    fleet = Fleet(settings, identities, seed=1, speed=speed, start=START, resume=False)
    stats = fleet.run(duration)
    cpu = _cpu() - cpu_before
    running = max(1e-9, stats.wall_seconds - stats.connect_seconds)
    print(
        json.dumps(
            {
                "devices": devices,
                "ephemeral_provision_seconds": round(provisioned, 2),
                "connect_seconds": stats.connect_seconds,
                "connected_peak": stats.connected_peak,
                "published": stats.published,
                "acked": stats.acked,
                "published_msgs_per_s": round(stats.published / running, 1),
                "acked_msgs_per_s": round(stats.acked / running, 1),
                "wall_seconds": stats.wall_seconds,
                "cpu_ms_per_message": round(1000 * cpu / max(1, stats.acked), 3),
                "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "lag_max_seconds_sim": stats.lag_max_seconds,
                "connect_failures": stats.connect_failures,
            }
        )
    )


def client_paho(settings_json: str) -> float:
    """CPU ms per publish+PUBACK with paho-mqtt 2 (loop_start thread), one connection."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from gridshare.core.broker_auth import ADMIN_USER, BrokerAuth
    from gridshare.core.settings import Settings

    settings = Settings.model_validate_json(settings_json)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=mqtt.MQTTv5)
    client.username_pw_set(ADMIN_USER, BrokerAuth(settings).service_accounts()[ADMIN_USER])
    client.max_inflight_messages_set(20)
    done, acked = threading.Event(), [0]

    def on_publish(client, userdata, mid, reason_code, properties):  # type: ignore[no-untyped-def]
        acked[0] += 1
        if acked[0] == CLIENT_MESSAGES:
            done.set()

    client.on_publish = on_publish
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    time.sleep(0.5)
    before = _cpu()
    for _ in range(CLIENT_MESSAGES):
        client.publish(TOPIC, PAYLOAD, qos=1)
    done.wait(300)
    cpu = _cpu() - before
    client.disconnect()
    client.loop_stop()
    return 1000 * cpu / CLIENT_MESSAGES


def client_own(settings_json: str) -> float:
    """CPU ms per publish+PUBACK with the simulator's client on uvloop, one connection."""
    import asyncio

    import uvloop

    from gridshare.core.broker_auth import ADMIN_USER, BrokerAuth
    from gridshare.core.settings import Settings
    from gridshare.sim.mqtt import MqttConnection, connect_packet

    settings = Settings.model_validate_json(settings_json)

    async def run() -> float:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        state = {"sent": 0, "acked": 0}

        def pump(conn: MqttConnection) -> None:
            while state["sent"] - state["acked"] < 20 and state["sent"] < CLIENT_MESSAGES:
                state["sent"] += 1
                conn.publish(TOPIC, PAYLOAD, state["sent"] % 65535 + 1)

        def on_puback(conn: MqttConnection, packet_id: int, reason: int) -> None:
            state["acked"] += 1
            if state["acked"] == CLIENT_MESSAGES:
                done.set()
            pump(conn)

        _, conn = await loop.create_connection(
            lambda: MqttConnection(on_puback, lambda c, e: None),
            settings.mqtt_host,
            settings.mqtt_port,
        )
        password = BrokerAuth(settings).service_accounts()[ADMIN_USER]
        conn.start(connect_packet("bench-own", ADMIN_USER, password, 60), 60)
        await conn.connack
        before = _cpu()
        pump(conn)
        await asyncio.wait_for(done.wait(), 300)
        cpu = _cpu() - before
        conn.disconnect()
        return 1000 * cpu / CLIENT_MESSAGES

    return uvloop.run(run())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(settings_json: str, devices: int, speed: float, duration: float) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", settings_json, str(devices), str(speed),
         str(duration)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GRIDSHARE_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_client(settings_json: str, which: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--client", which, settings_json],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from _common import finish, private_stack

    from gridshare.core import db
    from gridshare.core.chain.compile import compile_contracts
    from gridshare.core.chain.deploy import deploy
    from gridshare.core.logs import setup_logging
    from gridshare.gateway.provision import provision

    setup_logging("WARNING")
    with private_stack("sim", None) as (settings, _):
        db.migrate(settings)
        settings_json = settings.model_dump_json()
        results: dict = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "fleets": {},
        }
        for devices, readings in FLEETS.items():
            results["fleets"][str(devices)] = run_child(
                settings_json, devices, 1e9, readings * INTERVAL
            )
            print(json.dumps({str(devices): results["fleets"][str(devices)]}), flush=True)
        speed = PACED_RATE * INTERVAL / PACED_DEVICES
        paced = run_child(settings_json, PACED_DEVICES, speed, PACED_WALL_S * speed)
        paced["offered_msgs_per_s"] = PACED_RATE
        results["paced_10000"] = paced
        print(json.dumps({"paced": paced}), flush=True)
        compile_contracts()
        deploy(settings)
        first = provision(settings, pools=3, per_pool=3334, chain=False)
        started = time.monotonic()
        second = provision(settings, pools=3, per_pool=3334, chain=True)
        results["provision_10000"] = {
            "devices": first.devices_total,
            "keys_db_broker_seconds": first.seconds,
            "chain_seconds": round(time.monotonic() - started, 2),
            "registered_on_chain": second.chain.devices_registered_now,
        }
        results["mqtt_client_cpu_ms_per_publish"] = {
            "paho_mqtt_2": round(run_client(settings_json, "paho"), 4),
            "gridshare_sim_mqtt_uvloop": round(run_client(settings_json, "own"), 4),
        }
        results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finish("sim", results)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        print((client_paho if sys.argv[2] == "paho" else client_own)(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
