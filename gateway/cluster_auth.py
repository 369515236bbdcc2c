"""Device logins on the clustered broker: users and per-device topic permissions.

The same interface as `BrokerAuth` (usernames, add_users, remove_users), so provisioning does
not care which broker it writes to. A device may publish only to `amq.topic` (where the MQTT
plugin puts every MQTT publish) and, by a topic permission, only under its own id: routing key
`gridshare.v1.devices.{id}.telemetry|status`, which is how the plugin spells the topic
`gridshare/v1/devices/{id}/…`. It may not read or declare anything. A publish under another
id is refused and the broker closes the connection, without a PUBACK.

Users live in the cluster's replicated metadata, so one import reaches every node. The full
set (service accounts and devices) is also kept in `cluster/definitions.json` under the state
dir (0600, salted hashes only): a broker run elsewhere (docker-compose) loads it at boot.
"""

from __future__ import annotations

import json
import re

from gridshare.core.broker_auth import BrokerAuth
from gridshare.core.files import write_private
from gridshare.core.payloads import TOPIC_ROOT, amqp_routing_key
from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.core.stack.cluster import EXCHANGE, Cluster, service_definitions, user_entry


def device_permissions(username: str) -> tuple[dict, dict]:
    """The vhost permission and the topic permission of one device."""
    own = re.escape(username)
    return (
        {"user": username, "vhost": "/", "configure": "^$", "write": "^amq\\.topic$", "read": "^$"},
        {
            "user": username,
            "vhost": "/",
            "exchange": EXCHANGE,
            "write": f"^{re.escape(amqp_routing_key(TOPIC_ROOT))}\\.{own}\\.(telemetry|status)$",
            "read": "^$",
        },
    )


class ClusterAuth:
    """Device logins of the clustered broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.definitions_file = settings.state_path / "cluster" / "definitions.json"

    def usernames(self) -> set[str]:
        return {user["name"] for user in self._devices().get("users", [])}

    def add_users(self, users: dict[str, str]) -> None:
        """Add or replace device logins: in the definitions file, then in the running cluster."""
        added = {"users": [], "permissions": [], "topic_permissions": []}
        for name, password in users.items():
            permission, topic = device_permissions(name)
            added["users"].append(user_entry(name, password, []))
            added["permissions"].append(permission)
            added["topic_permissions"].append(topic)
        devices = self._devices()
        for key, entries in added.items():
            kept = [e for e in devices.get(key, []) if e.get("name", e.get("user")) not in users]
            devices[key] = kept + entries
        self._save(devices)
        running = self._running()
        if running is not None:
            running.import_definitions(added)

    def remove_users(self, names: list[str]) -> None:
        devices = self._devices()
        for key, entries in devices.items():
            devices[key] = [e for e in entries if e.get("name", e.get("user")) not in names]
        self._save(devices)
        running = self._running()
        for name in names if running is not None else []:
            running.ctl("delete_user", name)

    def _running(self) -> Cluster | None:
        found = cluster.layout(self.settings)
        if found is None:
            return None
        local = Cluster(self.settings, found)
        return local if any(n.process.pid() for n in local.nodes) else None

    def _devices(self) -> dict[str, list[dict]]:
        """The device part of the definitions file."""
        try:
            saved = json.loads(self.definitions_file.read_text())
        except FileNotFoundError:
            return {}
        services = {u["name"] for u in service_definitions(self.settings)["users"]}
        return {
            key: [e for e in saved.get(key, []) if e.get("name", e.get("user")) not in services]
            for key in ("users", "permissions", "topic_permissions")
        }

    def _save(self, devices: dict[str, list[dict]]) -> None:
        BrokerAuth(self.settings).ensure_service_accounts()
        services = service_definitions(self.settings)
        full = {
            "users": services["users"] + devices.get("users", []),
            "vhosts": [{"name": "/"}],
            "permissions": services["permissions"] + devices.get("permissions", []),
            "topic_permissions": devices.get("topic_permissions", []),
        }
        self.definitions_file.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.definitions_file, json.dumps(full))


def device_logins(settings: Settings) -> BrokerAuth | ClusterAuth:
    """Where device logins go: the clustered broker if there is one, else Mosquitto's files."""
    return ClusterAuth(settings) if cluster.enabled(settings) else BrokerAuth(settings)
