"""Ingest on the clustered broker: committed msg/s with 1, 2 and 4 workers, p99 latency, and
where the CPU goes; the single-Mosquitto figure of the same run beside them.

On a private PostgreSQL (commit timestamps on) with a Mosquitto and a three-node cluster
(free ports, temporary state dirs), 1,000 registered devices, signed readings:

- `mosquitto.committed_msgs_per_s`: one `gridshare ingest` worker storing a backlog kept by its
  MQTT session (as bench/ingest.py measures it);
- `cluster.workers.{1,2,4}.committed_msgs_per_s`: the same number of readings published into
  the cluster's quorum queue while no worker runs, then drained by 1, 2 or 4 workers; the rate
  counts the commits after every worker was consuming, so worker start-up is left out;
- `cluster.publish_msgs_per_s`: how fast one publisher process got PUBACKs from the cluster
  (one MQTT connection per node); a PUBACK means the queue has the message on a majority;
- `cluster.p50/p99_latency_ms`: publish -> commit per message with 2 workers at an offered load
  of half their committed rate;
- `cluster.broker_kb_per_connection`: the nodes' added resident memory per idle MQTT
  connection (2,000 connections spread over the nodes), for sizing nodes by fleet size;
- `cpu_seconds_share`: per run, each part's share of the CPU time this system used (broker
  nodes, the workers' main and receiving processes, PostgreSQL) while the backlog drained.

Prints JSON and writes bench/results/cluster.json; exits 1 if a run fails or the cluster with
2 workers commits less than half of what one worker does on Mosquitto (the cluster's price
for replication on this machine's two cores, see docs/scale-out.md).
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, load_average, private_stack, publish_paced

import ingest as shared  # bench/ingest.py: its stack, signing and commit-time helpers
from gridshare.core import db
from gridshare.core.broker_auth import ADMIN_USER, BrokerAuth
from gridshare.core.errors import GridshareError
from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.core.stack.cluster import Cluster
from gridshare.core.stack.process import free_port_range
from gridshare.sim.mqtt import MqttConnection, connect_packet

DEVICES = 1_000
READINGS = 30  # per device and run: 30,000 messages
WORKER_COUNTS = (1, 2, 4)
LATENCY_MESSAGES = 5_000
IDLE_CONNECTIONS = 2_000
NODES = 3


def progress(line: str) -> None:
    print(f"bench cluster: {line}", file=sys.stderr, flush=True)


def publish(settings: Settings, messages_file: str, times_file: str, rate: float) -> None:
    """Child process: publish the pre-signed messages over MQTT 3.1.1, spread over one
    connection per node, as fast as possible or at `rate`; record each publish's time and
    print how long it took until the last PUBACK."""
    messages = pickle.loads(Path(messages_file).read_bytes())
    password = BrokerAuth(settings).service_accounts()[ADMIN_USER]
    acked = [0]
    clients = []
    for index, (host, port) in enumerate(cluster.mqtt_endpoints(settings)):
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{index}", protocol=mqtt.MQTTv311
        )
        client.username_pw_set(ADMIN_USER, password)
        client.max_inflight_messages_set(1000)
        client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
        client.connect(host, port)
        client.loop_start()
        clients.append(client)
    while not all(c.is_connected() for c in clients):
        time.sleep(0.01)
    started = time.monotonic()
    times = publish_paced(
        messages,
        lambda i, topic, payload: clients[i % len(clients)].publish(topic, payload, 1),
        rate,
    )
    while acked[0] < len(messages):
        time.sleep(0.005)
    seconds = time.monotonic() - started
    for client in clients:
        client.disconnect()
        client.loop_stop()
    Path(times_file).write_bytes(times.tobytes())
    print(json.dumps({"count": len(messages), "seconds": seconds}))


def run_publisher(settings: Settings, messages: list, workdir: Path, rate: float = 0.0):
    """(publish times, seconds until the last PUBACK)."""
    messages_file, times_file = workdir / "cluster-messages.pickle", workdir / "cluster-times.bin"
    messages_file.write_bytes(pickle.dumps(messages))
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "child",
            settings.model_dump_json(),
            str(messages_file),
            str(times_file),
            str(rate),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    times = array.array("d")
    times.frombytes(times_file.read_bytes())
    return times, json.loads(out.strip().splitlines()[-1])["seconds"]


def start_workers(settings: Settings, tag: str, count: int, workdir: Path) -> list:
    """`count` workers started together; returned once every one consumes."""
    env = {
        **os.environ,
        "GRIDSHARE_DB_URL": settings.db_url,
        "GRIDSHARE_STATE_DIR": str(settings.state_path),
        "GRIDSHARE_INGEST_METRICS_PORT": "0",
    }
    started = []
    for n in range(count):
        log = workdir / f"ingest-{tag}-{n}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [shared.GRIDSHARE, "ingest", "--worker", f"{tag}-{n}"], env=env, stderr=out
            )
        started.append((proc, log))
    deadline = time.monotonic() + 180
    for proc, log in started:
        while "consuming" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest worker did not start: {log.read_text()[-500:]}")
            time.sleep(0.1)
    return [proc for proc, _ in started]


def stop(workers: list) -> None:
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        proc.wait(120)


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def cpu_shares(before: dict, roots: dict[str, list[int]]) -> dict[str, float]:
    """Each part's share of the CPU time used since `before` (a `process_table`): a part is
    its root processes and their descendants; the workers' children are their receiving
    processes. Other processes on the machine are not counted."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)

    def tree(pid: int) -> list[int]:
        found = [pid]
        for child in children.get(pid, []):
            found += tree(child)
        return found

    def used(pid: int) -> float:
        return table[pid][1] - before.get(pid, (0, 0.0))[1] if pid in table else 0.0

    members = {
        "broker_nodes": [p for root in roots["broker_nodes"] for p in tree(root)],
        "postgres": [p for root in roots["postgres"] for p in tree(root)],
        "ingest_main": roots["workers"],
        "ingest_receiving": [p for root in roots["workers"] for p in tree(root)[1:]],
    }
    seconds = {part: sum(used(p) for p in pids) for part, pids in members.items()}
    total = sum(seconds.values()) or 1.0
    return {part: round(value / total, 2) for part, value in sorted(seconds.items())}


def drain(
    settings: Settings, conn, fleet, messages, workers: int, workdir: Path, before: int
) -> tuple[float, dict[str, float]]:
    """Backlog into the queue, then `workers` drain it; (committed msg/s, CPU shares).
    `conn` is on the private PostgreSQL: its server process's parent is the postmaster."""
    ids = [d for d, _ in fleet]
    run_publisher(settings, messages, workdir)
    cpu_before = process_table()
    procs = start_workers(settings, f"w{workers}", workers, workdir)
    consuming = time.time()
    shared.wait_rows(conn, ids, before + len(messages), 600)
    nodes = Cluster(settings, cluster.layout(settings)).nodes
    roots = {
        "broker_nodes": [pid for node in nodes if (pid := node.process.pid())],
        "postgres": [process_table()[conn.info.backend_pid][0]],
        "workers": [proc.pid for proc in procs],
    }
    shares = cpu_shares(cpu_before, roots)
    stop(procs)
    commits = [t for t in shared.commit_times(conn, ids).values() if t > consuming]
    rate = len(commits) / (max(commits) - consuming) if commits else 0.0
    return rate, shares


def broker_rss_mb() -> float:
    """Resident memory of every broker node, MB."""
    total = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"beam.smp" in (entry / "cmdline").read_bytes():
                status = (entry / "status").read_text()
                total += int(status.split("VmRSS:")[1].split()[0])
        except (OSError, IndexError):
            continue
    return total / 1024


async def hold_connections(settings: Settings, count: int) -> float:
    """Open `count` idle MQTT connections (as devices would: one login each, spread over
    the nodes) and return the brokers' added memory per connection, KB."""
    password = BrokerAuth(settings).service_accounts()[ADMIN_USER]
    endpoints = cluster.mqtt_endpoints(settings)
    loop = asyncio.get_running_loop()
    before = broker_rss_mb()
    conns = []
    for index in range(count):
        host, port = endpoints[index % len(endpoints)]
        _, conn = await loop.create_connection(
            lambda: MqttConnection(lambda *_: None, lambda *_: None, protocol=4), host, port
        )
        conn.start(
            connect_packet(f"bench-idle-{index}", ADMIN_USER, password, 300, protocol=4), 300
        )
        await asyncio.wait_for(conn.connack, 60)
        conns.append(conn)
    await asyncio.sleep(5)
    grown = broker_rss_mb() - before
    for conn in conns:
        conn.disconnect()
    return grown * 1024 / count


def measure() -> dict:
    with private_stack("cluster", shared.STACK, ingest_metrics_port=0) as (single, tmp):
        shared.prepare_stack(single)
        clustered = single.model_copy(
            update={
                "state_dir": tmp / "clustered",
                "cluster": NODES,
                "cluster_port": free_port_range(cluster.PORT_SPAN),
            }
        )
        nodes = Cluster(clustered, cluster.layout(clustered))
        try:
            progress("starting the cluster")
            nodes.up()
            return run(single, clustered, tmp)
        finally:
            nodes.down()


def run(single: Settings, clustered: Settings, workdir: Path) -> dict:
    with db.connect(single, autocommit=True) as conn:
        fleet = shared.register(conn, DEVICES, "cl")
        ids = [d for d, _ in fleet]
        rounds = iter(range(1, 10**6))

        def batch(readings: int) -> list:
            return shared.signed(fleet, [next(rounds) for _ in range(readings)])

        before = 0
        backlog = batch(READINGS)
        away = shared.start_worker(single, "mq", workdir, keep=True)
        away.send_signal(signal.SIGTERM)
        away.wait(120)
        shared.run_publisher(single, backlog, workdir)
        worker = shared.start_worker(single, "mq", workdir)
        shared.wait_rows(conn, ids, len(backlog), 600)
        mosquitto_rate = shared.steady_rate(list(shared.commit_times(conn, ids).values()))
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
        before += len(backlog)
        progress(f"mosquitto, 1 worker: {mosquitto_rate:.0f} msg/s")

        run_publisher(clustered, batch(1), workdir)  # warm-up; drained with the first run
        before += DEVICES
        by_workers, cpu = {}, {}
        for count in WORKER_COUNTS:
            messages = batch(READINGS)
            started = time.monotonic()
            rate, shares = drain(clustered, conn, fleet, messages, count, workdir, before)
            before += len(messages)
            by_workers[str(count)] = {"committed_msgs_per_s": round(rate)}
            cpu[str(count)] = shares
            took = time.monotonic() - started
            progress(f"cluster, {count} worker(s): {rate:.0f} msg/s ({took:.0f} s in all)")
        publish_backlog = batch(READINGS)
        _, publish_seconds = run_publisher(clustered, publish_backlog, workdir)
        publish_rate = len(publish_backlog) / publish_seconds
        procs = start_workers(clustered, "lat", 2, workdir)
        before += len(publish_backlog)
        shared.wait_rows(conn, ids, before, 600)
        paced = batch(max(1, LATENCY_MESSAGES // DEVICES))
        offered = round(0.5 * by_workers["2"]["committed_msgs_per_s"])
        times, _ = run_publisher(clustered, paced, workdir, offered)
        before += len(paced)
        shared.wait_rows(conn, ids, before, 600)
        latency = shared.latencies(paced, times, shared.commit_times(conn, ids))
        stop(procs)
        connection_kb = asyncio.run(hold_connections(clustered, IDLE_CONNECTIONS))
        progress(f"{connection_kb:.0f} KB of broker memory per MQTT connection")
    two = by_workers["2"]["committed_msgs_per_s"]
    return {
        "benchmark": "cluster",
        "cpus": os.cpu_count(),
        "loadavg_1m": load_average(),
        "devices": DEVICES,
        "messages_per_run": DEVICES * READINGS,
        "mosquitto": {"workers": 1, "committed_msgs_per_s": round(mosquitto_rate)},
        "cluster": {
            "nodes": NODES,
            "workers": by_workers,
            "publish_msgs_per_s": round(publish_rate),
            "p50_latency_ms": shared.percentile(latency, 0.50),
            "p99_latency_ms": shared.percentile(latency, 0.99),
            "latency_offered_msgs_per_s": offered,
            "latency_messages": len(paced),
            "broker_kb_per_connection": round(connection_kb),
            "connections_measured": IDLE_CONNECTIONS,
        },
        "cpu_seconds_share": cpu,
        "meets_target": two >= 0.5 * mosquitto_rate,
    }


def main() -> None:
    try:
        result = measure()
    except (
        GridshareError,
        RuntimeError,
        subprocess.SubprocessError,
        psycopg.Error,
        OSError,
    ) as exc:
        print(json.dumps({"benchmark": "cluster", "error": str(exc)[:500]}))
        sys.exit(1)
    finish("cluster", result, result["meets_target"])


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        publish(Settings.model_validate_json(sys.argv[2]), *sys.argv[3:5], float(sys.argv[5]))
    else:
        main()
