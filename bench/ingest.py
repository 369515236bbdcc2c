"""Ingest throughput and latency, with the broker's and the database's raw limits beside them.

For fleets of 1,000 and 10,000 registered devices (signatures verified), on a private
PostgreSQL and Mosquitto (free ports, temporary state dir):

- `committed_msgs_per_s`: `gridshare ingest` storing a backlog: the messages are published
  while the worker is away (its persistent session keeps them), then the worker drains them;
  the rate is counted from its first commit to its last. Devices are separate machines in
  production, so the publisher's CPU is kept out of this figure; it is not kept out of
  `committed_msgs_per_s_live`: the same messages stored while a paho publisher on the same two
  cores sends them (first publish to last commit), nor of
  `committed_msgs_per_s_two_workers`: two `--shared` workers, on new readings, live;
- `raw_broker_msgs_per_s`: the same backlog drained by a paho subscriber that only
  acknowledges (and `raw_broker_msgs_per_s_live`: consumed while published), the limit the
  target's share is taken of; `raw_broker_msgs_per_s_receiving_loop`: the same through the
  worker's own receiving loop (`BrokerLink`: select loop, buffered socket), acknowledging
  each burst at once, which is faster than a plain paho subscriber;
- `p50/p99_latency_ms`: publish -> commit per message (PostgreSQL commit timestamps) at a paced
  offered load of half the live committed rate; the same under the live saturating run are
  given too;
- `committed_msgs_per_s_without_evidence`: the backlog drain as above, by a worker that stores
  empty evidence (`GRIDSHARE_INGEST_KEEP_EVIDENCE=false`), on as many new readings; the two
  drains alternate, twice, and both figures are the means of their rounds (each round is
  given too); `evidence_cost_share` = 1 - with / without;
- `bytes_per_reading` / `bytes_per_reading_without_evidence`: table + TOAST + index size per
  row of the backlog's rows COPYed into a table shaped like `telemetry` (with its indexes),
  with the signed bytes and signature, and with empty ones;
- `raw_copy_rows_per_s`: the same rows COPYed straight into a table shaped like `telemetry`;
- `naive_insert_msgs_per_s`: a consumer validating each message and INSERTing it alone.

Messages are signed before timing and published from a separate process. Prints JSON and
writes bench/results/ingest.json. Target: >= 5,000 msg/s committed and >= half the slower
raw limit.

`python bench/ingest.py flood` (a mode of its own, bench/results/ingest_flood.json): p50/p99
publish -> commit latency of well-behaved devices at a paced load, in one run without and
then with one device flooding 10,000 bad 16 KiB messages over its own TLS connection, and how
much the quarantine grew. Target: the flood at most doubles the p99 (plus 250 ms of slack for
a busy machine), and the quarantine grows by at most the per-device cap.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import pickle
import secrets
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from _common import conditions, finish, load_average, private_stack, publish_paced
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gridshare.core import db
from gridshare.core.broker_auth import ADMIN_USER, INGEST_USER, BrokerAuth
from gridshare.core.payloads import TELEMETRY_TOPIC, encode_reading, format_ts, parse_telemetry
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key, recover
from gridshare.core.stack.mosquitto import Mosquitto
from gridshare.core.stack.postgres import Postgres
from gridshare.ingest.broker import BrokerLink, credentials
from gridshare.ingest.pipe import Raw

GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))
STACK = [Postgres, Mosquitto]  # run by `private_stack`, then `prepare_stack`
FLEETS = {1_000: 30, 10_000: 3}  # devices: readings each in the saturating run
LATENCY_MESSAGES = 10_000
LATENCY_SHARE = 0.5  # latency is measured at this share of the measured committed rate
NAIVE_SECONDS = 10.0
TARGET_COMMITTED = 5_000.0
# device time two days back: inside ingest's window around receipt for every seq used here
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
COLUMNS = (
    "time, device_id, seq, status, power_w, soc_pct, energy_wh_total, sessions_total,"
    " revenue_minor_total, currency, signed_bytes, sig"
)
MAX_EVIDENCE_COST = 0.10  # with evidence within 10% of the rate without
EVIDENCE_ROUNDS = 2  # backlog drains without and with evidence, alternating


def mqtt_client(settings: Settings, user: str, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, BrokerAuth(settings).service_accounts()[user])
    return client


# --- child processes -------------------------------------------------------------------


def publish(settings: Settings, messages_file: str, times_file: str, rate: float) -> None:
    """Publish every pre-signed message (QoS 1), as fast as possible or at `rate`; record
    each publish's wall time."""
    messages = pickle.loads(Path(messages_file).read_bytes())
    client = mqtt_client(settings, ADMIN_USER, f"bench-pub-{secrets.token_hex(3)}")
    client.max_inflight_messages_set(1000)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    times = publish_paced(
        messages, lambda _, topic, payload: client.publish(topic, payload, 1), rate
    )
    while acked[0] < len(messages):
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    Path(times_file).write_bytes(times.tobytes())


def consume(settings: Settings, expected: int, mode: str, seconds: float) -> None:
    """Subscribe, then consume until `expected` messages or `seconds` after the first; print
    {"count", "seconds"}. Mode `raw` discards; mode `naive` validates, verifies and INSERTs
    each message in its own transaction; mode `drain` subscribes in a persistent session,
    leaves, and after a line on stdin comes back to discard what was kept meanwhile."""
    conn = db.connect(settings, autocommit=True) if mode == "naive" else None
    addresses = dict(conn.execute("SELECT device_id, address FROM devices")) if conn else {}
    state = {"count": 0, "first": 0.0, "last": 0.0}

    def on_message(client, userdata, msg) -> None:
        now = time.perf_counter()
        if not state["count"]:
            state["first"] = now
        if conn is not None and now - state["first"] <= seconds:
            reading, canonical = parse_telemetry(msg.payload)
            if recover(canonical, reading.sig) == addresses[reading.device_id]:
                conn.execute(
                    f"INSERT INTO bench_naive ({COLUMNS}) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        reading.ts,
                        reading.device_id,
                        reading.seq,
                        reading.status,
                        reading.power_w,
                        reading.soc_pct,
                        reading.energy_wh_total,
                        reading.sessions_total,
                        reading.revenue_minor_total,
                        reading.currency,
                        canonical,
                        bytes.fromhex(reading.sig[2:]),
                    ),
                )
        elif conn is not None:
            return
        state["count"] += 1
        state["last"] = time.perf_counter()

    client_id = f"bench-sub-{secrets.token_hex(3)}"
    session = Properties(PacketTypes.CONNECT)
    session.SessionExpiryInterval = 3600
    session.ReceiveMaximum = 4000
    client = connected(settings, client_id, on_message, session)
    if mode == "drain":
        client.disconnect()
        client.loop_stop()
        print("ready", flush=True)
        sys.stdin.readline()
        client = connected(settings, client_id, on_message, session)
    else:
        print("ready", flush=True)
    while state["count"] < expected and not (
        state["count"] and time.perf_counter() - state["first"] > seconds + 1
    ):
        time.sleep(0.01)
    ending = Properties(PacketTypes.DISCONNECT)
    ending.SessionExpiryInterval = 0  # a kept session would be sent every later message
    client.disconnect(properties=ending)
    client.loop_stop()
    print(json.dumps({"count": state["count"], "seconds": state["last"] - state["first"]}))


def drain_with_receiving_loop(settings: Settings, expected: int) -> None:
    """Mode `drain-loop`: as `drain`, through the worker's `BrokerLink`, acknowledging every
    message as soon as its burst is read."""
    settings = settings.model_copy(update={"ingest_shared": False})
    client_id = f"bench-loop-{secrets.token_hex(3)}"
    got: list[Raw] = []
    ready: list[bool] = []

    def linked() -> BrokerLink:
        login = credentials(settings)
        link = BrokerLink(settings, client_id, 4000, login, got.append, ready.append)
        if link.start() is not None:
            raise RuntimeError("bench receiving loop: no connection")
        while not any(ready):
            link.pump(0.1, ())
        return link

    linked().stop()
    print("ready", flush=True)
    sys.stdin.readline()
    link = linked()
    count, first, last = 0, 0.0, 0.0
    while count < expected:
        link.pump(1.0, ())
        if got:
            last = time.perf_counter()
            first = first or last
            count += len(got)
            link.ack(raw[:3] for raw in got)
            got.clear()
    link.stop(end_session=True)
    print(json.dumps({"count": count, "seconds": last - first}))


def connected(settings: Settings, client_id: str, on_message, session: Properties) -> mqtt.Client:
    """A subscriber in a persistent session (clean start off), once subscribed."""
    client = mqtt_client(settings, INGEST_USER, client_id)
    client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(TELEMETRY_TOPIC.format(device_id="+"), qos=1)
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=False, properties=session)
    client.loop_start()
    if not subscribed.wait(30):
        raise RuntimeError("bench subscriber: no SUBACK")
    return client


# --- the run ---------------------------------------------------------------------------


def child(settings: Settings, *args: object) -> list[str]:
    env_settings = settings.model_dump_json()
    return [sys.executable, __file__, "child", env_settings, *map(str, args)]


def register(conn: psycopg.Connection, devices: int, tag: str) -> list[tuple[str, bytes]]:
    pool = f"charging-pile-{tag}"
    conn.execute(
        "INSERT INTO pools (name, pool_id, device_type, share_bps) VALUES (%s, %s, %s, 7000)",
        (pool, "0x" + hashlib.sha256(pool.encode()).hexdigest(), "charging_pile"),
    )
    fleet = [
        (f"cp-{tag}-{i:05d}", hashlib.sha256(f"{tag}-{i}".encode()).digest())
        for i in range(devices)
    ]
    with conn.cursor().copy("COPY devices (device_id, type, pool, address) FROM STDIN") as copy:
        for device_id, key in fleet:
            copy.write_row((device_id, "charging_pile", pool, address_for_key(key)))
    return fleet


def signed(fleet: list[tuple[str, bytes]], seqs: list[int]) -> list[tuple[str, bytes]]:
    """Every device's readings for `seqs`, interleaved the way a fleet publishes."""
    messages = []
    for seq in seqs:
        for device_id, key in fleet:
            fields = {
                "v": 1,
                "device_id": device_id,
                "type": "charging_pile",
                "seq": seq,
                "ts": format_ts(T0 + timedelta(seconds=300 * seq)),
                "status": "charging",
                "power_w": 7200.0,
                "soc_pct": 63.5,
                "energy_wh_total": 600 * seq,
                "sessions_total": seq // 12,
                "revenue_minor_total": 150 * seq,
                "currency": "HKD",
            }
            messages.append(
                (TELEMETRY_TOPIC.format(device_id=device_id), encode_reading(fields, key))
            )
    return messages


def run_publisher(
    settings: Settings, messages: list, workdir: Path, rate: float = 0.0
) -> array.array:
    messages_file, times_file = workdir / "messages.pickle", workdir / "times.bin"
    messages_file.write_bytes(pickle.dumps(messages))
    subprocess.run(child(settings, "publish", messages_file, times_file, rate), check=True)
    times = array.array("d")
    times.frombytes(times_file.read_bytes())
    return times


def run_consumer(settings: Settings, messages: list, workdir: Path, mode: str) -> dict:
    proc = subprocess.Popen(
        child(settings, "consume", len(messages), mode, NAIVE_SECONDS if mode == "naive" else 600),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    run_publisher(settings, messages, workdir)
    out, _ = proc.communicate("go\n", timeout=900)
    return json.loads(out.strip().splitlines()[-1])


def progress(line: str) -> None:
    print(f"bench ingest: {line}", file=sys.stderr, flush=True)


def start_worker(
    settings: Settings,
    tag: str,
    workdir: Path,
    shared: bool = False,
    keep: bool = False,
    evidence: bool = True,
) -> subprocess.Popen:
    """`gridshare ingest`, returned once subscribed. Its session ends when it stops unless
    `keep`: then the broker queues what is published meanwhile for its return."""
    env = {
        **os.environ,
        "GRIDSHARE_DB_URL": settings.db_url,
        "GRIDSHARE_MQTT_URL": settings.mqtt_url,
        "GRIDSHARE_STATE_DIR": str(settings.state_path),
        "GRIDSHARE_INGEST_METRICS_PORT": "0",
        "GRIDSHARE_INGEST_KEEP_EVIDENCE": "true" if evidence else "false",
    }
    log = workdir / f"ingest-{tag}.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [
                GRIDSHARE,
                "ingest",
                "--worker",
                tag,
                "--no-retire" if keep else "--retire",
                "--shared" if shared else "--no-shared",
            ],
            env=env,
            stderr=out,
        )
    deadline = time.monotonic() + 120
    while "ingest worker running" not in log.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ingest worker did not start: {log.read_text()[-500:]}")
        time.sleep(0.1)
    time.sleep(0.5)  # SUBACK
    return worker


def commit_times(conn: psycopg.Connection, device_ids: list[str]) -> dict[tuple[str, int], float]:
    rows = conn.execute(
        "SELECT device_id, seq, extract(epoch FROM pg_xact_commit_timestamp(xmin))"
        " FROM telemetry WHERE device_id = ANY(%s)",
        (device_ids,),
    )
    return {(d, s): float(t) for d, s, t in rows}


def wait_rows(
    conn: psycopg.Connection, device_ids: list[str], expected: int, timeout: float
) -> None:
    """Until `expected` readings of these devices are stored. Polls `device_state` twice a
    second: counting the telemetry rows often would take a core from what is measured."""
    deadline = time.monotonic() + timeout
    query = "SELECT coalesce(sum(readings), 0) FROM device_state WHERE device_id = ANY(%s)"
    while (stored := conn.execute(query, (device_ids,)).fetchone()[0]) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest stored {stored} of {expected} rows in {timeout}s")
        time.sleep(0.5)


def steady_rate(commits: list[float]) -> float:
    """Rows per second from the first commit to the last (the first commit's rows are the
    start line, not counted)."""
    first, last = min(commits), max(commits)
    return sum(1 for t in commits if t > first) / (last - first)


def latencies(messages: list, times: array.array, committed: dict) -> list[float]:
    result = []
    for (_topic, payload), published in zip(messages, times, strict=True):
        reading = json.loads(payload)
        result.append((committed[(reading["device_id"], reading["seq"])] - published) * 1000)
    return sorted(result)


def percentile(sorted_values: list[float], q: float) -> float:
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 1)


def drain_backlog(
    settings: Settings,
    conn: psycopg.Connection,
    tag: str,
    messages: list,
    workdir: Path,
    evidence: bool = True,
) -> tuple[float, subprocess.Popen]:
    """Publish `messages` while the worker `tag` is away, then let it drain them: the
    committed rate, and the worker (still running)."""
    device_ids = sorted({json.loads(p)["device_id"] for _, p in messages})
    before = conn.execute(
        "SELECT coalesce(sum(readings), 0) FROM device_state WHERE device_id = ANY(%s)",
        (device_ids,),
    ).fetchone()[0]
    away = start_worker(settings, tag, workdir, keep=True, evidence=evidence)
    away.send_signal(signal.SIGTERM)
    away.wait(120)
    started = time.time()
    run_publisher(settings, messages, workdir)  # kept by the worker's session
    worker = start_worker(settings, tag, workdir, evidence=evidence)
    wait_rows(conn, device_ids, before + len(messages), 300)
    commits = [t for t in commit_times(conn, device_ids).values() if t >= started]
    return steady_rate(commits), worker


def bytes_per_row(conn: psycopg.Connection, rows: list[tuple], evidence: bool) -> float:
    """Table + TOAST + index bytes per row of `rows` in a fresh table shaped like
    `telemetry` (its indexes included), with their evidence or with empty evidence."""
    conn.execute("DROP TABLE IF EXISTS bench_size")
    conn.execute("CREATE TABLE bench_size (LIKE telemetry INCLUDING DEFAULTS INCLUDING INDEXES)")
    with conn.transaction(), conn.cursor().copy(f"COPY bench_size ({COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row if evidence else (*row[:-2], b"", b""))
    conn.execute("VACUUM ANALYZE bench_size")
    size = conn.execute("SELECT pg_total_relation_size('bench_size')").fetchone()[0]
    conn.execute("DROP TABLE bench_size")
    return size / len(rows)


def run_fleet(settings: Settings, devices: int, readings: int, workdir: Path) -> dict:
    tag = f"b{devices}"
    with db.connect(settings, autocommit=True) as conn:
        fleet = register(conn, devices, tag)
        device_ids = [d for d, _ in fleet]
        started = time.perf_counter()
        rounds = iter(range(1, 10**6))
        pairs = [
            (
                signed(fleet, [next(rounds) for _ in range(readings)]),
                signed(fleet, [next(rounds) for _ in range(readings)]),
            )
            for _ in range(EVIDENCE_ROUNDS)
        ]
        blast = pairs[0][1]
        live = signed(fleet, [next(rounds) for _ in range(readings)])
        paced = signed(fleet, [next(rounds) for _ in range(max(1, LATENCY_MESSAGES // devices))])
        second = signed(fleet, [next(rounds) for _ in range(readings)])
        signing_seconds = time.perf_counter() - started

        raw = run_consumer(settings, blast, workdir, "drain")
        raw_live = run_consumer(settings, blast, workdir, "raw")
        raw_loop = run_consumer(settings, blast, workdir, "drain-loop")
        progress(f"{devices} devices: raw broker {raw}, live {raw_live}, own loop {raw_loop}")

        bare_rates, rates = [], []
        for bare, kept in pairs:  # alternating, so a change of load hits both alike
            rate, worker = drain_backlog(settings, conn, tag, bare, workdir, evidence=False)
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
            bare_rates.append(rate)
            progress(f"{devices} devices: {rate:.0f} msg/s committed without evidence")
            rate, worker = drain_backlog(settings, conn, tag, kept, workdir)
            rates.append(rate)
            progress(f"{devices} devices: {rate:.0f} msg/s committed from a backlog")
            if len(rates) < EVIDENCE_ROUNDS:
                worker.send_signal(signal.SIGTERM)
                worker.wait(120)
        bare_rate, committed_rate = sum(bare_rates) / len(pairs), sum(rates) / len(pairs)

        before = sum(len(bare) + len(kept) for bare, kept in pairs)
        times = run_publisher(settings, live, workdir)
        wait_rows(conn, device_ids, before + len(live), 300)
        committed = commit_times(conn, device_ids)
        live_latency = latencies(live, times, committed)
        live_rate = len(live) / (max(committed.values()) - times[0])
        progress(f"{devices} devices: {live_rate:.0f} msg/s committed live")

        latency_rate = round(LATENCY_SHARE * live_rate)
        before += len(live)
        times = run_publisher(settings, paced, workdir, latency_rate)
        wait_rows(conn, device_ids, before + len(paced), 300)
        paced_latency = latencies(paced, times, commit_times(conn, device_ids))
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)

        # the same load shared by two workers (`--shared`), one per core
        pair = [start_worker(settings, f"{tag}-{n}", workdir, shared=True) for n in (1, 2)]
        before += len(paced)
        times = run_publisher(settings, second, workdir)
        wait_rows(conn, device_ids, before + len(second), 300)
        last_commit = max(commit_times(conn, device_ids).values())
        two_workers_rate = len(second) / (last_commit - times[0])
        progress(f"{devices} devices: {two_workers_rate:.0f} msg/s committed by two workers")
        for worker in pair:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)

        rows = [
            (
                r.ts,
                r.device_id,
                r.seq,
                r.status,
                r.power_w,
                r.soc_pct,
                r.energy_wh_total,
                r.sessions_total,
                r.revenue_minor_total,
                r.currency,
                canonical,
                bytes.fromhex(r.sig[2:]),
            )
            for r, canonical in (parse_telemetry(p) for _, p in blast)
        ]
        with_evidence = bytes_per_row(conn, rows, evidence=True)
        without_evidence = bytes_per_row(conn, rows, evidence=False)
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute(
            "CREATE TABLE bench_copy (LIKE telemetry INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(f"COPY bench_copy ({COLUMNS}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        copy_rate = len(rows) / (time.perf_counter() - started)
        progress(f"{devices} devices: {copy_rate:.0f} rows/s COPY")
        conn.execute("DROP TABLE bench_copy")

        conn.execute("DROP TABLE IF EXISTS bench_naive")
        conn.execute(
            "CREATE TABLE bench_naive (LIKE telemetry INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        naive = run_consumer(settings, blast, workdir, "naive")
        conn.execute("DROP TABLE bench_naive")

    raw_rate = raw["count"] / raw["seconds"]
    slower_raw = min(raw_rate, copy_rate)
    return {
        "devices": devices,
        "messages": len(blast),
        "signing_seconds": round(signing_seconds, 1),
        "committed_msgs_per_s": round(committed_rate),
        "committed_msgs_per_s_without_evidence": round(bare_rate),
        "committed_msgs_per_s_rounds": [round(r) for r in rates],
        "committed_msgs_per_s_without_evidence_rounds": [round(r) for r in bare_rates],
        "evidence_cost_share": round(1 - committed_rate / bare_rate, 3),
        "bytes_per_reading": round(with_evidence),
        "bytes_per_reading_without_evidence": round(without_evidence),
        "evidence_bytes_per_reading": round(with_evidence - without_evidence),
        "committed_msgs_per_s_live": round(live_rate),
        "committed_msgs_per_s_two_workers": round(two_workers_rate),
        "p50_latency_ms": percentile(paced_latency, 0.50),
        "p99_latency_ms": percentile(paced_latency, 0.99),
        "latency_offered_msgs_per_s": latency_rate,
        "latency_messages": len(paced),
        "saturated_p50_latency_ms": percentile(live_latency, 0.50),
        "saturated_p99_latency_ms": percentile(live_latency, 0.99),
        "raw_broker_msgs_per_s": round(raw_rate),
        "raw_broker_msgs_per_s_live": round(raw_live["count"] / raw_live["seconds"]),
        "raw_broker_msgs_per_s_receiving_loop": round(raw_loop["count"] / raw_loop["seconds"]),
        "share_of_receiving_loop_limit": round(
            committed_rate * raw_loop["seconds"] / raw_loop["count"], 2
        ),
        "raw_copy_rows_per_s": round(copy_rate),
        "naive_insert_msgs_per_s": round(naive["count"] / naive["seconds"]),
        "share_of_slower_raw_limit": round(committed_rate / slower_raw, 2),
        "meets_target": committed_rate >= TARGET_COMMITTED
        and committed_rate >= slower_raw / 2
        and committed_rate >= (1 - MAX_EVIDENCE_COST) * bare_rate,
    }


def prepare_stack(settings: Settings) -> None:
    """Restart the running PostgreSQL with commit timestamps (for per-message latency) and
    migrate."""
    postgres = Postgres(settings)
    postgres.down()
    with open(postgres.data / "postgresql.conf", "a") as conf:
        conf.write("track_commit_timestamp = on\n")
    postgres.up()
    db.migrate(settings)


def main() -> None:
    load_at_start = load_average()
    with private_stack("ingest", STACK, ingest_metrics_port=0) as (settings, tmp):
        prepare_stack(settings)
        with db.connect(settings) as conn:
            flavor = str(db.schema_flavor(conn))
        fleets = {
            str(devices): run_fleet(settings, devices, readings, tmp)
            for devices, readings in FLEETS.items()
        }
    result = {
        **conditions("ingest", flavor, load_at_start),
        "fleets": fleets,
        "committed_msgs_per_s": min(f["committed_msgs_per_s"] for f in fleets.values()),
        "target_committed_msgs_per_s": TARGET_COMMITTED,
        "meets_target": all(f["meets_target"] for f in fleets.values()),
    }
    finish("ingest", result, result["meets_target"])


# --- flood mode: latency of well-behaved devices while one device floods -----------------

FLOOD_DEVICES = 200  # well-behaved devices
FLOOD_MESSAGES = 10_000  # bad messages from the flooding device
FLOOD_PACED = 6_000  # well-behaved readings per phase
FLOOD_RATE = 300.0  # well-behaved readings per second, offered
FLOOD_P99_FACTOR, FLOOD_P99_SLACK_MS = 2.0, 250.0  # p99 with flood <= factor * without + slack


def flood(settings: Settings, device_id: str, password: str, count: int) -> None:
    """Child: publish `count` bad 16 KiB messages as `device_id` over its TLS connection, as
    fast as the broker acknowledges them; print {"seconds"}."""
    from gridshare.core.payloads import MAX_PAYLOAD_BYTES
    from gridshare.gateway.broker import connect_device, device_client

    client = device_client(settings, device_id, password)
    client.max_inflight_messages_set(100)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    connect_device(settings, client)
    client.loop_start()
    bad = b"{" + os.urandom(MAX_PAYLOAD_BYTES - 1)
    started = time.monotonic()
    for _ in range(count):
        client.publish(TELEMETRY_TOPIC.format(device_id=device_id), bad, qos=1)
    while acked[0] < count:
        time.sleep(0.01)
    print(json.dumps({"seconds": round(time.monotonic() - started, 2)}), flush=True)
    client.disconnect()
    client.loop_stop()


def run_flood(settings: Settings, workdir: Path) -> dict:
    """Paced well-behaved load, first alone, then beside the flood; both latencies."""
    from gridshare.gateway.broker import wait_for_login
    from gridshare.ingest.quarantine import QuarantinePolicy

    with db.connect(settings, autocommit=True) as conn:
        fleet = register(conn, FLOOD_DEVICES, "flood")
        flooder = register(conn, 1, "flooder")[0][0]
        password = secrets.token_urlsafe(18)
        BrokerAuth(settings).add_users({flooder: password})
        wait_for_login(settings, flooder, password)
        device_ids = [d for d, _ in fleet]
        per_phase = FLOOD_PACED // FLOOD_DEVICES
        calm = signed(fleet, list(range(1, per_phase + 1)))
        stormy = signed(fleet, list(range(per_phase + 1, 2 * per_phase + 1)))
        worker = start_worker(settings, "flood", workdir)
        try:
            times = run_publisher(settings, calm, workdir, FLOOD_RATE)
            wait_rows(conn, device_ids, len(calm), 300)
            calm_latency = latencies(calm, times, commit_times(conn, device_ids))
            progress(f"without flood: p99 {percentile(calm_latency, 0.99)} ms")
            size_before = conn.execute("SELECT pg_total_relation_size('quarantine')").fetchone()[0]
            started = time.monotonic()
            flooding = subprocess.Popen(
                child(settings, "flood", flooder, password, FLOOD_MESSAGES),
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.5)  # the flood is under way
            times = run_publisher(settings, stormy, workdir, FLOOD_RATE)
            out, _ = flooding.communicate(timeout=900)
            wait_rows(conn, device_ids, len(calm) + len(stormy), 300)
            stormy_latency = latencies(stormy, times, commit_times(conn, device_ids))
            time.sleep(3)  # the rest of the flood reaches the quarantine
            elapsed = time.monotonic() - started
            rows, kept = conn.execute(
                "SELECT count(*), coalesce(sum(octet_length(payload)), 0) FROM quarantine"
                " WHERE device_id = %s",
                (flooder,),
            ).fetchone()
            size_after = conn.execute("SELECT pg_total_relation_size('quarantine')").fetchone()[0]
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
    policy = QuarantinePolicy.from_settings(settings)
    cap_rows = policy.burst + int(policy.per_minute * elapsed / 60) + 1
    p99_flood = percentile(stormy_latency, 0.99)
    p99_target = round(FLOOD_P99_FACTOR * percentile(calm_latency, 0.99) + FLOOD_P99_SLACK_MS, 1)
    return {
        "well_behaved_devices": FLOOD_DEVICES,
        "offered_msgs_per_s": FLOOD_RATE,
        "messages_per_phase": len(calm),
        "p50_latency_ms_without_flood": percentile(calm_latency, 0.5),
        "p99_latency_ms_without_flood": percentile(calm_latency, 0.99),
        "p50_latency_ms_with_flood": percentile(stormy_latency, 0.5),
        "p99_latency_ms_with_flood": p99_flood,
        "flood_messages": FLOOD_MESSAGES,
        "flood_message_bytes": len(b"{") + 16 * 1024 - 1,
        "flood_seconds": json.loads(out.strip().splitlines()[-1])["seconds"],
        "quarantine_rows_stored": rows,
        "quarantine_payload_bytes_stored": kept,
        "quarantine_cap_rows": cap_rows,
        "quarantine_table_growth_bytes": size_after - size_before,
        "target_p99_ms_with_flood": p99_target,
        "meets_target": p99_flood <= p99_target and rows <= cap_rows,
    }


def main_flood() -> None:
    with private_stack("flood", STACK, ingest_metrics_port=0) as (settings, tmp):
        prepare_stack(settings)
        figures = run_flood(settings, tmp)
    result = {
        "benchmark": "ingest_flood",
        "cpus": os.cpu_count(),
        "loadavg_1m": load_average(),
        **figures,
    }
    finish("ingest_flood", result, result["meets_target"])


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        child_settings = Settings.model_validate_json(sys.argv[2])
        role, *rest = sys.argv[3:]
        if role == "flood":
            flood(child_settings, rest[0], rest[1], int(rest[2]))
        elif role == "publish":
            publish(child_settings, rest[0], rest[1], float(rest[2]))
        elif rest[1] == "drain-loop":
            drain_with_receiving_loop(child_settings, int(rest[0]))
        else:
            consume(child_settings, int(rest[0]), rest[1], float(rest[2]))
    elif sys.argv[1:] == ["flood"]:
        main_flood()
    else:
        main()
