"""The worker's MQTT side in a process of its own, and the worker's handle on it.

paho spends about 80 µs of Python per received message, even driven from our own loop
(`BrokerLink.pump`); parsing, checking the signature and writing take more than that again.
In one process both would share one interpreter lock and one core, so the receiving process
(`serve`) runs `BrokerLink` and the worker's main process validates and writes.
They talk over two pipes in the protocol of `pipe.py`.

Acknowledgements still follow commits: the worker sends `Ack` only after the batch is
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
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import TypeVar

from gridshare.core.errors import GridshareError, ServiceUnreachable
from gridshare.core.settings import Settings
from gridshare.ingest.broker import BrokerLink, credentials
from gridshare.ingest.metrics import SUBSCRIBED
from gridshare.ingest.pipe import (
    Ack,
    Command,
    Events,
    Messages,
    Started,
    Stop,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    detach,
)
from gridshare.ingest.validate import Message

STOP_SECONDS = 15.0
log = logging.getLogger(__name__)
Reply = TypeVar("Reply", Started, Unsubscribed)


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
        self._replies: deque[Started | Unsubscribed] = deque()
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
        started = self._reply(Started, timeout + 30)  # + the child's interpreter start
        if started is None:
            cause = "receiving process ended" if not self.alive else "no answer in time"
        else:
            cause = started.cause
        if cause is not None:
            self.stop()
            raise ServiceUnreachable("broker", *self.address, cause)

    def ack(self, messages: Iterable[Message]) -> None:
        """PUBACK these messages (those of a session that is no longer ours are skipped)."""
        self._send(Ack([(m.mid, m.qos, m.epoch) for m in messages]))

    def unsubscribe(self, timeout: float = 5.0) -> bool:
        """Ask for no further messages; True once the broker confirmed."""
        if not self._send(Unsubscribe(timeout)):
            return False
        reply = self._reply(Unsubscribed, timeout + 5)
        return reply is not None and reply.confirmed

    def stop(self, end_session: bool = False) -> None:
        """Disconnect after the acknowledgements sent so far; with `end_session`, the broker
        drops the session. Waits for the receiving process to end."""
        self._send(Stop(end_session))
        if self._process is None:
            return
        self._process.join(STOP_SECONDS)
        if self._process.is_alive():
            log.warning("receiver did not stop; terminating it")
            self._process.kill()
            self._process.join()

    def _send(self, command: Command) -> bool:
        if self._commands is None or not self.alive:
            return False
        try:
            self._commands.send(command)
        except OSError:
            return False
        return True

    def _reply(self, kind: type[Reply], timeout: float) -> Reply | None:
        """The next reply of `kind`; None if none comes in time or the receiver ended."""
        deadline = time.monotonic() + timeout
        with self._replied:
            while True:
                for reply in self._replies:
                    if isinstance(reply, kind):
                        self._replies.remove(reply)
                        return reply
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.alive:
                    return None
                self._replied.wait(min(remaining, 0.5))

    def _read(self, events: Connection) -> None:
        """Dispatch the receiver's events until it ends."""
        try:
            while True:
                event = events.recv()
                if isinstance(event, Messages):
                    self.inbox.put(map(Message._make, event.raws))
                elif isinstance(event, Subscribed):
                    SUBSCRIBED.set(int(event.on))
                else:
                    with self._replied:
                        self._replies.append(event)
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
    forwards what arrived in chunks, and leaves at once if the worker is gone."""
    detach(settings)
    out = Events(events)
    link = BrokerLink(settings, client_id, receive_maximum, login, out.deliver, out.subscribed)
    cause = link.start()
    out.started(cause)
    if cause is not None:
        return
    unsubscribing: float | None = None  # deadline of an unsubscribe not yet confirmed
    try:
        while True:
            ready = link.pump(out.wait(), [commands])
            out.forward()
            while ready and commands.poll():
                command: Command = commands.recv()
                if isinstance(command, Ack):
                    link.ack(command.keys)
                elif isinstance(command, Unsubscribe):
                    confirmed_in = command.timeout if link.unsubscribe() else 0.0
                    unsubscribing = time.monotonic() + confirmed_in
                else:
                    link.stop(end_session=command.end_session)
                    return
            if unsubscribing is not None and (
                link.unsubscribed or time.monotonic() > unsubscribing
            ):
                out.unsubscribed(link.unsubscribed)
                unsubscribing = None
    except (EOFError, OSError):
        log.warning("ingest worker gone; receiver leaving without acknowledging more")
        with contextlib.suppress(Exception):
            events.close()
        os._exit(1)
