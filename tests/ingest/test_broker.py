"""The receiving side's paho driving: the single-threaded pump."""

from __future__ import annotations

import secrets
import time

from gridshare.core.settings import Settings
from gridshare.ingest.broker import BrokerLink, credentials
from gridshare.ingest.paho_socket import BufferedSocket
from gridshare.ingest.pipe import Raw
from tests.ingest.fleet import Publisher


def test_link_receives_acknowledges_and_unsubscribes(stack_settings: Settings) -> None:
    """Driven only by `pump`: connect, subscribe, bursts of messages in order, PUBACKs,
    unsubscribe and a clean disconnect."""
    received: list[Raw] = []
    states: list[bool] = []
    settings = stack_settings.model_copy(update={"ingest_shared": False})
    link = BrokerLink(
        settings,
        f"test-link-{secrets.token_hex(3)}",
        1000,
        credentials(settings),
        received.append,
        states.append,
    )
    assert link.start() is None
    assert isinstance(link._client.socket(), BufferedSocket)  # paho's socket hook holds
    deadline = time.monotonic() + 10
    while not states and time.monotonic() < deadline:
        link.pump(0.1, ())
    assert states == [True]
    publisher = Publisher(settings)
    device = f"cp-link-{secrets.token_hex(3)}"
    for seq in range(300):
        publisher.publish(f"gridshare/v1/devices/{device}/telemetry", b"x" * seq)
    publisher.flush()
    publisher.close()
    deadline = time.monotonic() + 20
    while len(received) < 300 and time.monotonic() < deadline:
        link.pump(0.1, ())
    assert [len(raw[4]) for raw in received] == list(range(300))
    link.ack((raw[0], raw[1], raw[2]) for raw in received)
    assert link.unsubscribe()
    deadline = time.monotonic() + 10
    while not link.unsubscribed and time.monotonic() < deadline:
        link.pump(0.1, ())
    assert link.unsubscribed and states[-1] is False
    link.stop(end_session=True)
    assert link._client.socket() is None
