"""Device connections to the running broker: a paho client for the TLS device listener, and
the check that a freshly added login is accepted (the broker re-reads its password file on
SIGHUP, asynchronously, so provisioning waits for it)."""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gridshare.core.errors import StackError
from gridshare.core.settings import Settings
from gridshare.core.stack import cluster
from gridshare.core.stack.process import port_open
from gridshare.core.tls import CertificateAuthority, client_context

log = logging.getLogger(__name__)


def device_client(
    settings: Settings, username: str, password: str, client_id: str = ""
) -> mqtt.Client:
    """An MQTT client for the device listener, not yet connected; connect it with
    `connect_device`. Mosquitto's device listener is MQTT v5 over TLS with the stack's CA
    (the broker makes the client id the username); a clustered broker's is MQTT 3.1.1."""
    clustered = cluster.enabled(settings)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"gridshare-probe-{time.monotonic_ns()}",
        protocol=mqtt.MQTTv311 if clustered else mqtt.MQTTv5,
    )
    client.username_pw_set(username, password)
    if not clustered:
        client.tls_set_context(client_context(CertificateAuthority(settings).ca_pem()))
    return client


def connect_device(settings: Settings, client: mqtt.Client) -> None:
    client.connect(*_endpoint(settings), keepalive=10)


def login_accepted(settings: Settings, username: str, password: str, timeout: float = 3.0) -> bool:
    """True if the broker's device listener accepts this username and password right now."""
    outcome: dict[str, bool] = {}
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        outcome["ok"] = not reason_code.is_failure
        done.set()

    def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
        done.set()

    client = device_client(settings, username, password)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        connect_device(settings, client)
    except OSError:
        return False
    client.loop_start()
    try:
        done.wait(timeout)
        return outcome.get("ok", False)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for_login(settings: Settings, username: str, password: str, timeout: float = 15.0) -> None:
    """Wait until the broker has reloaded and accepts the login; a broker that is not
    running picks the password file up when it starts, so there is nothing to wait for."""
    if not port_open(*_endpoint(settings)):
        log.warning(
            "broker not running; logins take effect when it starts",
            extra={"fields": {"mqtt_device_url": settings.mqtt_device_url}},
        )
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if login_accepted(settings, username, password):
            return
        time.sleep(0.1)
    raise StackError(
        f"broker at {settings.mqtt_device_url} still refuses the new login {username} after "
        f"{timeout:.0f}s; is it the broker of this state dir (`gridshare stack status`)?"
    )


def _endpoint(settings: Settings) -> tuple[str, int]:
    """The broker devices log in to: Mosquitto's device listener, or the clustered broker's
    first node."""
    nodes = cluster.mqtt_endpoints(settings)
    return nodes[0] if nodes else (settings.mqtt_device_host, settings.mqtt_device_port)
