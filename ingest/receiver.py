"""The worker's MQTT side in a process of its own, and the worker's handle on it.

paho spends about 80 µs of Python per received message, even driven from our own loop
(`BrokerLink.pump`); parsing, checking the signature and writing take more than that again.
In one process both would share one interpreter lock and one core, so the receiving process
(`serve`) runs `BrokerLink` and the worker's main process validates and writes.
They talk over two pipes:

- receiver -> worker: events `("messages", [Raw, …])`, `("subscribed", bool)`,
  `("started", cause | None)`, `("unsubscribed", bool)`;
- worker -> receiver: commands `("ack", [(mid, qos, epoch), …])`, `("unsubscribe", timeout)`,
  `("stop", end_session)`.

Acknowledgements still follow commits: the worker sends `ack` only after the batch is
committed. If the worker dies, the receiver reads end-of-file on its command pipe and exits
without acknowledging anything more, so the broker redelivers what was not committed. The
receiver ignores SIGINT and SIGTERM: the worker decides when it stops (a terminal's Ctrl-C
or a service manager's group-wide SIGTERM reaches both).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection

from gridshare.core.errors import GridshareError, ServiceUnreachable
from gridshare.core.logs import setup_logging
from gridshare.core.settings import Settings
from gridshare.ingest.broker import BrokerLink, Raw, credentials
from gridshare.ingest.metrics import SUBSCRIBED
from gridshare.ingest.validate import Message

STOP_SECONDS = 15.0
FORWARD_SECONDS = 0.01
IDLE_SECONDS = 1.0  # the longest wait without a keepalive check (KEEPALIVE is 30 s)
log = logging.getLogger(__name__)


class ReceiverDied(GridshareError):
    """The receiving process ended without being asked to."""


class Inbox:
    """Received messages in arrival order, taken in batches."""

    def __init__(self) -> None:
        self._messages: deque[Message] = deque()
        self._arrived = threading.Condition()

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, messages: Iterable[Message]) -> None:
        with self._arrived:
            self._messages.extend(messages)
            self._arrived.notify()

    def take(self, size: int, seconds: float, idle: float) -> list[Message]:
        """Waits up to `idle` for a first message, then until `size` messages or `seconds`
        after that; at most `size` messages."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._messages, idle):
                return []
            deadline = time.monotonic() + seconds
            while len(self._messages) < size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
            return [self._messages.popleft() for _ in range(min(size, len(self._messages)))]


class Receiver:
    """Starts and drives the receiving process; collects its messages into `inbox`."""

    def __init__(
        self,
        settings: Settings,
        client_id: str,
        receive_maximum: int,
        target: Callable[..., None] | None = None,
        login: Callable[[Settings], tuple[str, ...]] = credentials,
        address: tuple[str, str] | None = None,
    ) -> None:
        """`target`, `login`, `address`: the receiving process's entry, what it logs in with,
        and the setting and URL named when it cannot start (default: `serve`, MQTT)."""
        self.settings = settings
        self.client_id = client_id
        self.receive_maximum = receive_maximum
        self.target = target or serve
        self.login = login
        self.address = address or ("GRIDSHARE_MQTT_URL", settings.mqtt_url)  # shown redacted
        self.inbox = Inbox()
        self._replies: deque[tuple] = deque()
        self._replied = threading.Condition()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._commands: Connection | None = None
        self._ended = threading.Event()

    @property
    def alive(self) -> bool:
        return not self._ended.is_set()

    def start(self, timeout: float = 10.0) -> None:
        """Start the receiving process; return once it is connected (it subscribes next), or
        raise a one-line error (unreachable or refused)."""
        login = self.login(self.settings)
        context = multiprocessing.get_context("spawn")
        events_in, events_out = context.Pipe(duplex=False)
        commands_in, self._commands = context.Pipe(duplex=False)
        self._process = context.Process(
            target=self.target,
            args=(self.settings, self.client_id, self.receive_maximum, login),
            kwargs={"commands": commands_in, "events": events_out},
            name="gridshare-ingest-receiver",
            daemon=True,
        )
        self._process.start()
        commands_in.close()
        events_out.close()
        threading.Thread(target=self._read, args=(events_in,), daemon=True).start()
        cause = self._reply("started", timeout + 30)  # + the child's interpreter start
        if cause is not None:
            self.stop()
            raise ServiceUnreachable("broker", *self.address, cause)

    def ack(self, messages: Iterable[Message]) -> None:
        """PUBACK these messages (those of a session that is no longer ours are skipped)."""
        self._send(("ack", [(m.mid, m.qos, m.epoch) for m in messages]))

    def unsubscribe(self, timeout: float = 5.0) -> bool:
        """Ask for no further messages; True once the broker confirmed."""
        if not self._send(("unsubscribe", timeout)):
            return False
        return bool(self._reply("unsubscribed", timeout + 5))

    def stop(self, end_session: bool = False) -> None:
        """Disconnect after the acknowledgements sent so far; with `end_session`, the broker
        drops the session. Waits for the receiving process to end."""
        self._send(("stop", end_session))
        if self._process is None:
            return
        self._process.join(STOP_SECONDS)
        if self._process.is_alive():
            log.warning("receiver did not stop; terminating it")
            self._process.kill()
            self._process.join()

    def _send(self, command: tuple) -> bool:
        if self._commands is None or not self.alive:
            return False
        try:
            self._commands.send(command)
        except OSError:
            return False
        return True

    def _reply(self, kind: str, timeout: float) -> object:
        """The next reply of `kind`; None if none comes in time or the receiver ended."""
        deadline = time.monotonic() + timeout
        with self._replied:
            while True:
                for reply in self._replies:
                    if reply[0] == kind:
                        self._replies.remove(reply)
                        return reply[1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.alive:
                    if kind != "started":
                        return None
                    return "receiving process ended" if not self.alive else "no answer in time"
                self._replied.wait(min(remaining, 0.5))

    def _read(self, events: Connection) -> None:
        """Dispatch the receiver's events until it ends."""
        try:
            while True:
                kind, value = events.recv()
                if kind == "messages":
                    self.inbox.put(map(Message._make, value))
                elif kind == "subscribed":
                    SUBSCRIBED.set(int(value))
                else:
                    with self._replied:
                        self._replies.append((kind, value))
                        self._replied.notify_all()
        except (EOFError, OSError):
            pass
        finally:
            SUBSCRIBED.set(0)
            self._ended.set()
            with self._replied:
                self._replied.notify_all()


def serve(
    settings: Settings,
    client_id: str,
    receive_maximum: int,
    login: tuple[str, str],
    commands: Connection,
    events: Connection,
) -> None:
    """The receiving process: one thread watches the broker and the worker's commands,
    forwards what arrived every `FORWARD_SECONDS` as one chunk (one pipe write per chunk, not
    per message), and leaves at once if the worker is gone."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    setup_logging(settings.log_level)
    received: list[Raw] = []
    link = BrokerLink(
        settings,
        client_id,
        receive_maximum,
        login,
        received.append,
        lambda subscribed: events.send(("subscribed", subscribed)),
    )
    cause = link.start()
    events.send(("started", cause))
    if cause is not None:
        return
    forwarded_at = 0.0
    unsubscribing: float | None = None  # deadline of an unsubscribe not yet confirmed
    try:
        while True:
            since = time.monotonic() - forwarded_at
            wait = max(0.0, FORWARD_SECONDS - since) if received else IDLE_SECONDS
            ready = link.pump(wait, [commands])
            if received and time.monotonic() - forwarded_at >= FORWARD_SECONDS:
                events.send(("messages", received[:]))
                received.clear()
                forwarded_at = time.monotonic()
            while ready and commands.poll():
                kind, value = commands.recv()
                if kind == "ack":
                    link.ack(value)
                elif kind == "unsubscribe":
                    unsubscribing = time.monotonic() + (value if link.unsubscribe() else 0.0)
                elif kind == "stop":
                    link.stop(end_session=value)
                    return
            if unsubscribing is not None and (
                link.unsubscribed or time.monotonic() > unsubscribing
            ):
                events.send(("unsubscribed", link.unsubscribed))
                unsubscribing = None
    except (EOFError, OSError):
        log.warning("ingest worker gone; receiver leaving without acknowledging more")
        with contextlib.suppress(Exception):
            events.close()
        os._exit(1)
