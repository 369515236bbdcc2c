"""The clustered broker: N RabbitMQ nodes on loopback ports under the state dir.

Devices keep speaking MQTT (RabbitMQ's MQTT plugin, MQTT 3.1.1) to any node; a device's
QoS 1 PUBLISH is acknowledged only once the message is confirmed by the quorum queue
`gridshare-ingest`, i.e. written on a majority of the nodes. Ingest workers consume that
queue over AMQP as competing consumers (`ingest/cluster.py`). Why RabbitMQ: docs/scale-out.md.

Ports, from `cluster_port` P: node i (0-based) takes MQTT P+i, AMQP P+10+i, Erlang
distribution P+20+i; the cluster's own epmd listens on P+30, so several state dirs can run
clusters side by side. Node 0 starts first; the others join it by peer discovery
(`classic_config`). Users, permissions and the queue live in the cluster's replicated
metadata, written with `rabbitmqctl import_definitions` once all nodes run.

`stack up --cluster N` records N and P in `cluster/cluster.json`, so later commands on the
same state dir (`stack down`, `ingest`, `sim`, `devices provision`) find the cluster.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from gridshare.core.broker_auth import ADMIN_USER, INGEST_USER, BrokerAuth
from gridshare.core.errors import StackError
from gridshare.core.payloads import STATUS_FILTER, TELEMETRY_FILTER, amqp_routing_key
from gridshare.core.settings import Settings
from gridshare.core.stack.process import (
    ManagedProcess,
    port_open,
    raise_open_files_limit,
    wait_until,
)
from gridshare.core.stack.service import LocalService

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
QUEUE = "gridshare-ingest"
EXCHANGE = "amq.topic"  # where the MQTT plugin publishes; MQTT '/' becomes '.' in its keys
ROUTING_KEYS = (amqp_routing_key(TELEMETRY_FILTER), amqp_routing_key(STATUS_FILTER))
HASHING = "rabbit_password_hashing_sha256"
# One scheduler per node and no busy-waiting: three nodes share the machine with the rest
# of the stack, and spinning schedulers would take the cores the ingest workers need.
# A node boots in 10-20 s on idle cores; on busy shared ones it has taken over two minutes.
START_SECONDS = 300.0
ERL_ARGS = "-noinput +S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"


PORT_SPAN = 31  # a layout's ports: `cluster_port` .. `cluster_port` + 30 (epmd)


@dataclass(frozen=True)
class Layout:
    """The local cluster's size and ports."""

    nodes: int
    port: int
    host: str = "127.0.0.1"

    def mqtt_port(self, index: int) -> int:
        return self.port + index

    def amqp_port(self, index: int) -> int:
        return self.port + 10 + index

    def dist_port(self, index: int) -> int:
        return self.port + 20 + index

    @property
    def epmd_port(self) -> int:
        return self.port + 30

    def node_name(self, index: int) -> str:
        return f"gridshare{index + 1}@localhost"


def record_path(settings: Settings) -> Path:
    return settings.state_path / "cluster" / "cluster.json"


def record(settings: Settings, nodes: int, port: int | None = None) -> None:
    """Remember (or, with 0, forget) the cluster `stack up --cluster N` asked for."""
    path = record_path(settings)
    if nodes <= 0:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"nodes": nodes, "port": port or settings.cluster_port}
    path.write_text(json.dumps(saved) + "\n")


def layout(settings: Settings) -> Layout | None:
    """The local cluster: GRIDSHARE_CLUSTER nodes, else the recorded one; None if neither."""
    if settings.cluster > 0:
        return Layout(settings.cluster, settings.cluster_port)
    try:
        saved = json.loads(record_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return Layout(int(saved["nodes"]), int(saved["port"]))


def enabled(settings: Settings) -> bool:
    """True when devices and ingest use a clustered broker instead of Mosquitto."""
    return bool(settings.cluster_mqtt_urls or settings.cluster_amqp_urls or layout(settings))


def _urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


def mqtt_endpoints(settings: Settings) -> list[tuple[str, int]]:
    """Every node's device listener, (host, port), in node order."""
    if settings.cluster_mqtt_urls:
        return [
            (urlsplit(u).hostname or "127.0.0.1", urlsplit(u).port or 1883)
            for u in _urls(settings.cluster_mqtt_urls)
        ]
    found = layout(settings)
    if found is None:
        return []
    return [(found.host, found.mqtt_port(i)) for i in range(found.nodes)]


def amqp_urls(settings: Settings) -> list[str]:
    """Every node's consumer endpoint: GRIDSHARE_CLUSTER_AMQP_URLS, else port 5672 of the
    hosts of GRIDSHARE_CLUSTER_MQTT_URLS, else the local cluster's; without credentials in
    the URL, the state dir's ingest service account logs in."""
    if settings.cluster_amqp_urls:
        given = [urlsplit(u) for u in _urls(settings.cluster_amqp_urls)]
        nodes = [(u.hostname or "127.0.0.1", u.port or 5672, u.username, u.password) for u in given]
    elif settings.cluster_mqtt_urls:
        nodes = [(host, 5672, None, None) for host, _ in mqtt_endpoints(settings)]
    elif (found := layout(settings)) is not None:
        nodes = [(found.host, found.amqp_port(i), None, None) for i in range(found.nodes)]
    else:
        return []
    password = BrokerAuth(settings).service_accounts().get(INGEST_USER, "")
    return [
        f"amqp://{user or INGEST_USER}:{secret if user else quote(password, safe='')}"
        f"@{host}:{port}/%2F"
        for host, port, user, secret in nodes
    ]


def declare_topology(conn: pika.BlockingConnection, nodes: int) -> BlockingChannel:
    """The quorum queue and its bindings (idempotent), on a channel returned for use. A new
    queue gets a replica on each node, three at most (a majority of three survives one node;
    more replicas only slow every write); an existing one is taken as it is."""
    channel = conn.channel()
    try:
        channel.queue_declare(QUEUE, passive=True)
    except pika.exceptions.ChannelClosedByBroker:  # not there yet: the channel is closed
        channel = conn.channel()
        channel.queue_declare(
            QUEUE,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-quorum-initial-group-size": min(nodes, 3)},
        )
    for key in ROUTING_KEYS:
        channel.queue_bind(QUEUE, EXCHANGE, routing_key=key)
    return channel


class ClusterNode(LocalService):
    """One node of the local cluster."""

    setting = "GRIDSHARE_CLUSTER_PORT"

    def __init__(self, settings: Settings, found: Layout, index: int) -> None:
        self.settings = settings
        self.layout = found
        self.index = index
        self.name = f"broker-{index + 1}"
        self.root = settings.state_path / "cluster"
        self.dir = self.root / f"node-{index + 1}"
        self.process = ManagedProcess(
            self.name,
            pid_file=self.dir / "node.pid",
            log_file=settings.state_path / "logs" / f"{self.name}.log",
            exe_name="rabbit",  # the start script, then the VM it becomes
        )
        self.host = found.host
        self.port = found.mqtt_port(index)

    def start(self) -> None:
        self.launch()
        self.wait_healthy()

    def wait_healthy(self) -> None:
        wait_until(self.healthy, START_SECONDS, "accepting logins", self.process)

    def launch(self) -> None:
        """Start the node without waiting for it."""
        if port_open(self.host, self.port):
            raise StackError(
                f"{self.name}: port {self.port} is taken by another process; "
                f"change {self.setting} or stop that process"
            )
        binary = RABBITMQ_BIN / "rabbitmq-server"
        if not binary.exists():
            raise StackError("rabbitmq: not installed; run `make setup`")
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "rabbitmq.conf"
        config.write_text(self._config())
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        raise_open_files_limit()
        self.process.start(
            [str(binary)],
            env={
                **node_env(self.settings, self.layout),
                "RABBITMQ_NODENAME": self.layout.node_name(self.index),
                "RABBITMQ_NODE_IP_ADDRESS": self.host,
                "RABBITMQ_NODE_PORT": str(self.layout.amqp_port(self.index)),
                "RABBITMQ_DIST_PORT": str(self.layout.dist_port(self.index)),
                "RABBITMQ_CONFIG_FILE": str(config),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.dir / "data"),
                "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                "ERL_CRASH_DUMP": str(self.dir / "erl_crash.dump"),  # not in the cwd
                "RABBITMQ_ALLOW_INPUT": "true",  # exec the VM itself: the pid is the node's
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
            },
        )

    def _config(self) -> str:
        admin = BrokerAuth(self.settings).service_accounts()[ADMIN_USER]
        peers = "".join(
            f"cluster_formation.classic_config.nodes.{i + 1} = {self.layout.node_name(i)}\n"
            for i in range(self.layout.nodes)
        )
        return f"""# generated by gridshare
listeners.tcp.1 = {self.host}:{self.layout.amqp_port(self.index)}
mqtt.listeners.tcp.1 = {self.host}:{self.port}
mqtt.allow_anonymous = false
mqtt.vhost = /
mqtt.exchange = {EXCHANGE}
loopback_users = none
default_user = {ADMIN_USER}
default_pass = {admin}
default_user_tags.administrator = true
cluster_formation.peer_discovery_backend = classic_config
{peers}cluster_partition_handling = pause_minority
log.console = true
log.console.level = warning
log.file = false
"""

    def healthy(self) -> bool:
        admin = BrokerAuth(self.settings).service_accounts().get(ADMIN_USER, "")
        params = pika.ConnectionParameters(
            self.host,
            self.layout.amqp_port(self.index),
            credentials=pika.PlainCredentials(ADMIN_USER, admin),
            connection_attempts=1,
            socket_timeout=2,
            blocked_connection_timeout=2,
        )
        try:
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPError:
            return False
        return True


def node_env(settings: Settings, found: Layout) -> dict[str, str]:
    """What a node and `rabbitmqctl` share: the cluster's epmd and Erlang cookie."""
    root = settings.state_path / "cluster"
    cookie = root / ".erlang.cookie"
    if not cookie.exists():
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(20).upper())
    return {
        "HOME": str(root),  # Erlang reads the cookie from $HOME/.erlang.cookie
        "ERL_EPMD_PORT": str(found.epmd_port),
        "RABBITMQ_CONF_ENV_FILE": "/dev/null",
    }


class Cluster:
    """The local cluster as one stack service: start node 0, then the others; stop all."""

    name = "cluster"

    def __init__(self, settings: Settings, found: Layout) -> None:
        self.settings = settings
        self.layout = found
        self.nodes = [ClusterNode(settings, found, i) for i in range(found.nodes)]

    def up(self) -> bool:
        BrokerAuth(self.settings).ensure_service_accounts()
        record(self.settings, self.layout.nodes, self.layout.port)  # for later commands
        first, *others = self.nodes
        started = [first.up()]  # the others join it, in parallel
        waiting = [node for node in others if node.process.pid() is None]
        for node in waiting:
            node.launch()
        for node in waiting:
            node.wait_healthy()
        started += [bool(waiting)]
        if any(started):
            self.wait_formed()
            self.import_definitions(service_definitions(self.settings))
            self.declare()
        return any(started)

    def down(self) -> bool:
        was_running = [node.down() for node in reversed(self.nodes)]
        with contextlib.suppress(OSError):
            subprocess.run(
                ["epmd", "-kill"],
                env={**os.environ, **node_env(self.settings, self.layout)},
                capture_output=True,
                timeout=10,
                check=False,
            )
        return any(was_running)

    def status(self) -> dict[str, str]:
        return {node.name: node.status() for node in self.nodes}

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """`rabbitmqctl ARGS` against the first running node; its stdout."""
        running = [i for i, node in enumerate(self.nodes) if node.process.pid() is not None]
        if not running:
            raise StackError("cluster: no node is running; run `gridshare stack up`")
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.layout.node_name(running[0]), *args],
            env={**os.environ, **node_env(self.settings, self.layout)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"cluster: rabbitmqctl {args[0]} failed: {result.stderr[-300:]}")
        return result.stdout

    def running_nodes(self) -> set[str]:
        out = self.ctl("cluster_status", "--formatter", "json")
        return set(json.loads(out).get("running_nodes", []))

    def wait_formed(self, timeout: float = START_SECONDS) -> None:
        """Until every node runs in one cluster."""
        wanted = {self.layout.node_name(i) for i in range(self.layout.nodes)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(StackError, ValueError, subprocess.TimeoutExpired):
                if self.running_nodes() >= wanted:
                    return
            time.sleep(1)
        raise StackError(f"cluster: nodes did not form one cluster within {timeout:.0f}s")

    def import_definitions(self, definitions: dict) -> None:
        """Merge users, permissions (...) into the cluster's metadata; the import itself
        finishes asynchronously, callers wait for what they need (a login, a queue)."""
        with tempfile.NamedTemporaryFile(
            "w", suffix=".json", dir=self.settings.state_path / "cluster", delete=False
        ) as handle:
            json.dump(definitions, handle)
        try:
            os.chmod(handle.name, 0o600)
            self.ctl("import_definitions", handle.name)
        finally:
            os.unlink(handle.name)

    def declare(self, timeout: float = 60.0) -> None:
        """Declare the queue as admin once the imported admin permissions are in place."""
        admin = BrokerAuth(self.settings).service_accounts()[ADMIN_USER]
        params = pika.ConnectionParameters(
            self.layout.host,
            self.layout.amqp_port(0),
            credentials=pika.PlainCredentials(ADMIN_USER, admin),
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with contextlib.closing(pika.BlockingConnection(params)) as conn:
                    declare_topology(conn, self.layout.nodes)
                return
            except pika.exceptions.AMQPError as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"cluster: cannot declare {QUEUE}: {exc!r}") from exc
                time.sleep(0.5)


def service_definitions(settings: Settings) -> dict:
    """The service accounts and what they may do: the admin everything; ingest only its
    queue (consume, declare and bind it)."""
    accounts = BrokerAuth(settings).service_accounts()
    return {
        "users": [
            user_entry(ADMIN_USER, accounts[ADMIN_USER], ["administrator"]),
            user_entry(INGEST_USER, accounts[INGEST_USER], []),
        ],
        "permissions": [
            {"user": ADMIN_USER, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
            {
                "user": INGEST_USER,
                "vhost": "/",
                "configure": f"^{QUEUE}$",
                "write": f"^{QUEUE}$",
                "read": f"^({QUEUE}|amq\\.topic)$",
            },
        ],
    }


def user_entry(name: str, password: str, tags: list[str]) -> dict:
    """A user for `import_definitions`, with RabbitMQ's salted SHA-256 password hash."""
    salt = secrets.token_bytes(4)
    digest = hashlib.sha256(salt + password.encode()).digest()
    return {
        "name": name,
        "password_hash": base64.b64encode(salt + digest).decode(),
        "hashing_algorithm": HASHING,
        "tags": tags,
    }


def compose_config(settings: Settings, nodes: int) -> Path:
    """For a cluster run elsewhere (docker-compose's `scale` profile: hosts broker-1…N, the
    state volume mounted at the same path): the nodes' config, plugins and Erlang cookie, and
    the definitions file they load at boot (service accounts now, devices as provisioned)."""
    from gridshare.gateway.cluster_auth import ClusterAuth

    root = settings.state_path / "cluster"
    root.mkdir(parents=True, exist_ok=True)
    BrokerAuth(settings).ensure_service_accounts()
    auth = ClusterAuth(settings)
    auth.add_users({})  # writes the definitions file with the service accounts
    peers = "".join(
        f"cluster_formation.classic_config.nodes.{i} = rabbit@broker-{i}\n"
        for i in range(1, nodes + 1)
    )
    config = root / "compose.conf"
    config.write_text(
        f"""# generated by gridshare (stack cluster-config)
listeners.tcp.default = 5672
mqtt.listeners.tcp.default = 1883
mqtt.allow_anonymous = false
mqtt.exchange = {EXCHANGE}
loopback_users = none
load_definitions = {auth.definitions_file}
cluster_formation.peer_discovery_backend = classic_config
{peers}cluster_partition_handling = pause_minority
"""
    )
    (root / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
    node_env(settings, Layout(nodes, settings.cluster_port))  # creates the cookie once
    return config
