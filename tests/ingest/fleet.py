"""Test helpers: registered devices that sign readings, a publisher, ingest worker processes.

Devices are inserted into `pools`/`devices` directly with fresh keys, and readings are
published as the broker's admin account; every test uses its own device ids, so tests
sharing the session's stack never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from gridshare.core.broker_auth import ADMIN_USER, BrokerAuth
from gridshare.core.payloads import STATUS_TOPIC, TELEMETRY_TOPIC, encode_reading, format_ts
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key

# readings start a day back (within ingest's window around receipt), at a whole hour
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
# suites replaying fixed dates of the past run their workers with a wide backfill window
FIXTURE_BACKFILL_SECONDS = str(20 * 365 * 86400)
GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))


@dataclass(frozen=True)
class Device:
    device_id: str
    key: bytes

    @property
    def topic(self) -> str:
        return TELEMETRY_TOPIC.format(device_id=self.device_id)

    @property
    def status_topic(self) -> str:
        return STATUS_TOPIC.format(device_id=self.device_id)

    def fields(self, seq: int, **overrides: Any) -> dict[str, Any]:
        """A charging-pile reading whose meters grow with seq."""
        fields = {
            "v": 1,
            "device_id": self.device_id,
            "type": "charging_pile",
            "seq": seq,
            "ts": format_ts(T0 + timedelta(seconds=60 * seq)),
            "status": "charging",
            "power_w": 7200.0,
            "soc_pct": 50.5,
            "energy_wh_total": 1000 * seq,
            "sessions_total": seq // 10,
            "revenue_minor_total": 300 * seq,
            "currency": "HKD",
        }
        fields.update(overrides)
        return fields

    def reading(self, seq: int, **overrides: Any) -> bytes:
        return encode_reading(self.fields(seq, **overrides), self.key)


def register(conn: psycopg.Connection, count: int) -> list[Device]:
    """`count` charging piles in a new pool, registered with fresh keys."""
    tag = secrets.token_hex(4)
    pool = f"charging-pile-{tag}"
    conn.execute(
        "INSERT INTO pools (name, pool_id, device_type, share_bps) VALUES (%s, %s, %s, 7000)",
        (pool, "0x" + secrets.token_hex(32), "charging_pile"),
    )
    devices = [Device(f"cp-{tag}-{i:05d}", os.urandom(32)) for i in range(count)]
    with conn.cursor().copy("COPY devices (device_id, type, pool, address) FROM STDIN") as copy:
        for device in devices:
            copy.write_row((device.device_id, "charging_pile", pool, address_for_key(device.key)))
    return devices


class Publisher:
    """One MQTT v5 connection as the admin account; QoS 1 publishes, waited for together."""

    def __init__(self, settings: Settings, client_id: str | None = None) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-pub-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(ADMIN_USER, BrokerAuth(settings).service_accounts()[ADMIN_USER])
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 2)
        self.acked: set[int] = set()
        self.client.on_publish = lambda client, userdata, mid, *_: self.acked.add(mid)
        self.client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=False)
        self.client.loop_start()
        self.pending: list[mqtt.MQTTMessageInfo] = []
        wait_until(self.client.is_connected, 10, "publisher connected")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.pending.append(self.client.publish(topic, payload, qos=1, retain=retain))

    def flush(self, timeout: float = 60) -> None:
        """Wait until the broker acknowledged every publish so far (those made while the
        broker was away included: paho sends them again once reconnected)."""
        wait_until(
            lambda: all(i.mid in self.acked for i in self.pending), timeout, "publishes acked"
        )
        self.pending.clear()
        self.acked.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class IngestProcess:
    """`gridshare ingest` as a child process, its JSON log lines in a file."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, worker: str, *args: str, **settings: str
    ) -> None:
        self.args = args
        self.env = {
            **env,
            "GRIDSHARE_INGEST_METRICS_PORT": "0",
            "GRIDSHARE_INGEST_BATCH_SECONDS": "0.05",
            "GRIDSHARE_INGEST_MAX_BACKFILL_SECONDS": FIXTURE_BACKFILL_SECONDS,
            **{f"GRIDSHARE_{k.upper()}": v for k, v in settings.items()},
        }
        self.worker = worker
        self.log_path = log_dir / f"ingest-{worker}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> IngestProcess:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it until it exits
        self.proc = subprocess.Popen(
            [GRIDSHARE, "ingest", "--worker", self.worker, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            wait_until(
                lambda: "ingest worker running" in self.log() or self.proc.poll() is not None,
                120,  # importing the CLI alone took 48 s on this shared machine under load
                "worker started",
            )
            assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stored(conn: psycopg.Connection, devices: list[Device]) -> tuple[int, int]:
    """(rows, distinct (device_id, seq) keys) stored for these devices."""
    row = conn.execute(
        "SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry"
        " WHERE device_id = ANY(%s)",
        ([d.device_id for d in devices],),
    ).fetchone()
    return row[0], row[1]


def quarantined(conn: psycopg.Connection, device_id: str) -> list[tuple[str, str, bytes]]:
    """(reason, detail, payload) of the quarantined messages claimed for `device_id`."""
    return conn.execute(
        "SELECT reason, detail, payload FROM quarantine WHERE device_id = %s ORDER BY id",
        (device_id,),
    ).fetchall()


class Pacer(threading.Thread):
    """Publishes (topic, payload) pairs at about `rate` per second in the background."""

    def __init__(self, publisher: Publisher, messages: list[tuple[str, bytes]], rate: float):
        super().__init__(daemon=True)
        self.publisher, self.messages, self.rate = publisher, messages, rate
        self.sent = 0

    def run(self) -> None:
        started = time.monotonic()
        for topic, payload in self.messages:
            self.publisher.publish(topic, payload)
            self.sent += 1
            ahead = self.sent / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
