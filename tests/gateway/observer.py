"""An MQTT observer logged in as the broker's admin (paho, independent of the simulator's
own MQTT client): records what the broker actually delivered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridshare.core.broker_auth import ADMIN_USER, BrokerAuth
from gridshare.core.settings import Settings


class Observer:
    """Subscribes as gridshare-admin and records (topic, payload, retain) as they arrive."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"observer-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        password = BrokerAuth(settings).service_accounts()[ADMIN_USER]
        self.client.username_pw_set(ADMIN_USER, password)

        def on_connect(client, userdata, flags, reason_code, properties):
            client.subscribe([(topic, 1) for topic in topics])

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            subscribed.set()

        def on_message(client, userdata, message):
            with self.lock:
                self.messages.append((message.topic, bytes(message.payload), message.retain))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        assert subscribed.wait(10), "observer could not subscribe"

    def received(self, topic_part: str = "") -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.messages if topic_part in m[0]]

    def wait_for(self, predicate, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def observer_factory(stack_settings: Settings) -> Iterator[Callable[[list[str]], Observer]]:
    """Make observers subscribed to the given topic filters; closed after the test."""
    observers: list[Observer] = []

    def make(topics: list[str]) -> Observer:
        observer = Observer(stack_settings, topics)
        observers.append(observer)
        return observer

    yield make
    for observer in observers:
        observer.close()
