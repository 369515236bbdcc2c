"""The protocol between the ingest worker and its receiving process (`receiver.py` for
Mosquitto, `cluster.py` for the clustered broker's queue), over two one-way pipes.

- receiver -> worker, events: `Started(cause)` once (None: connected), `Subscribed(on)`
  whenever readiness changes, `Messages(raws)` every `FORWARD_SECONDS` at the most while
  messages arrive, `Unsubscribed(confirmed)` after an `Unsubscribe`;
- worker -> receiver, commands: `Ack(keys)` after the batch is committed,
  `Unsubscribe(timeout)`, `Stop(end_session)`.

Envelopes are named tuples (they pickle faster than dataclasses), one per chunk of messages;
each message stays a plain `Raw` tuple on the wire, so typing adds no per-message cost.
"""

from __future__ import annotations

import signal
import time
from multiprocessing.connection import Connection
from typing import NamedTuple

from gridshare.core.logs import setup_logging
from gridshare.core.settings import Settings

FORWARD_SECONDS = 0.01
IDLE_SECONDS = 1.0  # the longest wait without a keepalive check (KEEPALIVE is 30 s)

Raw = tuple[int, int, int, str, bytes, float, float]
"""A received message: mid, qos, session epoch, topic, payload, wall and monotonic time."""

AckKey = tuple[int, int, int]
"""What acknowledges a message: mid, qos, session epoch."""


class Started(NamedTuple):
    """The receiving process is connected (`cause` None) or gave up (why)."""

    cause: str | None


class Subscribed(NamedTuple):
    """The receiving process is (or no longer is) subscribed: the worker's readiness."""

    on: bool


class Messages(NamedTuple):
    """What arrived since the last chunk, in arrival order."""

    raws: list[Raw]


class Unsubscribed(NamedTuple):
    """The answer to `Unsubscribe`: whether the broker confirmed."""

    confirmed: bool


class Ack(NamedTuple):
    """Acknowledge these messages (those of a session that is no longer ours are skipped)."""

    keys: list[AckKey]


class Unsubscribe(NamedTuple):
    """Ask for no further messages; wait up to `timeout` for the broker's confirmation."""

    timeout: float


class Stop(NamedTuple):
    """Disconnect after the acknowledgements sent so far; `end_session`: drop the session."""

    end_session: bool


Event = Started | Subscribed | Messages | Unsubscribed
Command = Ack | Unsubscribe | Stop


def detach(settings: Settings) -> None:
    """Set up a receiving process: the worker decides when it stops (a terminal's Ctrl-C or
    a service manager's group-wide SIGTERM reaches both), so it ignores both signals."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    setup_logging(settings.log_level)


class Events:
    """The receiving process's end of the event pipe; gathers arrivals into chunks (one
    pipe write per chunk, not per message)."""

    def __init__(self, events: Connection) -> None:
        self.events = events
        self.received: list[Raw] = []
        self.deliver = self.received.append
        self._forwarded_at = 0.0

    def started(self, cause: str | None) -> None:
        self.events.send(Started(cause))

    def subscribed(self, on: bool) -> None:
        self.events.send(Subscribed(on))

    def unsubscribed(self, confirmed: bool) -> None:
        self.events.send(Unsubscribed(confirmed))

    def wait(self) -> float:
        """How long the receiving loop may wait for the broker before the next chunk is due."""
        if not self.received:
            return IDLE_SECONDS
        return max(0.0, FORWARD_SECONDS - (time.monotonic() - self._forwarded_at))

    def forward(self) -> None:
        """Send what arrived as one chunk, if there is any and one is due."""
        if self.received and time.monotonic() - self._forwarded_at >= FORWARD_SECONDS:
            self.events.send(Messages(self.received[:]))
            self.received.clear()
            self._forwarded_at = time.monotonic()
