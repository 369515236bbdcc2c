"""The worker's receiving side on the clustered broker: a competing consumer of the quorum
queue `gridshare-ingest` (see gridshare/core/stack/cluster.py), over AMQP.

It runs in the receiving process like `BrokerLink` does for Mosquitto and speaks the same pipe
protocol with the worker (`pipe.py`), so the worker's batch / validate / commit / ack
pipeline is unchanged. Every worker consumes the same queue; the broker hands each message to
one of them, at most `receive_maximum` unacknowledged per worker (the prefetch). A message is
acknowledged (`basic.ack`) only after the worker committed it. When a worker dies, its
connection closes and the broker gives its unacknowledged messages to the others; a worker
that joins gets its share of what arrives from then on. There is no session to keep, so
`stop(end_session)` and `retire` need no special care here: closing hands back the rest.

Delivery tags number the messages of one channel; after a reconnect (a node died: the next
node in the list is tried) the epoch changes and acknowledgements of the old channel's
messages are skipped: the broker has already given them out again, and the (device_id, seq)
key drops the copy that arrives twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import zlib
from multiprocessing.connection import Connection

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from gridshare.core.payloads import AMQP_SWAP
from gridshare.core.settings import Settings
from gridshare.core.stack.cluster import QUEUE, amqp_urls, declare_topology
from gridshare.ingest.broker import RECONNECT_DELAYS
from gridshare.ingest.pipe import Ack, AckKey, Command, Events, Unsubscribe, detach
from gridshare.ingest.receiver import Receiver

HEARTBEAT = 30
log = logging.getLogger(__name__)


def receiver(settings: Settings, client_id: str, receive_maximum: int) -> Receiver:
    """A `Receiver` whose process consumes the cluster's queue instead of an MQTT session."""
    urls = amqp_urls(settings)
    shown = ",".join(redact(u) for u in urls)
    return Receiver(
        settings,
        client_id,
        receive_maximum,
        target=serve,
        login=lambda _settings: tuple(urls),
        address=("GRIDSHARE_CLUSTER_AMQP_URLS", shown),
    )


def redact(url: str) -> str:
    params = pika.URLParameters(url)
    return f"amqp://{params.host}:{params.port}"


class QueueLink:
    """One consumer of the queue on the first node of `urls` that answers; reconnects to the
    next one when its node goes away."""

    def __init__(self, urls: list[str], client_id: str, prefetch: int, deliver, subscribed):
        self.urls = urls
        self.client_id = client_id
        self.prefetch = prefetch
        self.deliver = deliver
        self.subscribed = subscribed
        self.epoch = 0
        self.cancelled = False
        self._next = zlib.crc32(client_id.encode())  # the node to try next: workers spread
        self._conn: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._tag = ""
        self._acked_upto = 0  # highest tag of this channel acknowledged so far

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.is_open

    def connect(self) -> str | None:
        """Try every node once; None once consuming, else the last error."""
        cause = "no cluster URLs (GRIDSHARE_CLUSTER_AMQP_URLS, or `stack up --cluster N`)"
        for _ in range(len(self.urls)):
            url = self.urls[self._next % len(self.urls)]
            self._next += 1
            try:
                self._open(url)
            except (pika.exceptions.AMQPError, OSError) as exc:
                cause = f"{redact(url)}: {exc!r}"
                log.warning("cluster node unreachable", extra={"fields": {"error": cause}})
                self._close()
                continue
            return None
        return cause

    def _open(self, url: str) -> None:
        params = pika.URLParameters(url)
        params.heartbeat = HEARTBEAT
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.client_properties = {"connection_name": self.client_id}
        self._conn = pika.BlockingConnection(params)
        self._channel = declare_topology(self._conn, len(self.urls))
        self._channel.basic_qos(prefetch_count=self.prefetch)
        self.epoch += 1
        self._tag = self._channel.basic_consume(QUEUE, self._on_message)
        self.cancelled = False
        self.subscribed(True)
        log.info(
            "consuming",
            extra={"fields": {"node": redact(url), "queue": QUEUE, "epoch": self.epoch}},
        )

    def pump(self, wait: float) -> bool:
        """Deliver what arrived within `wait`; False if the connection was lost."""
        try:
            assert self._conn is not None
            self._conn.process_data_events(time_limit=wait)
        except (pika.exceptions.AMQPError, OSError, AssertionError) as exc:
            log.warning("lost cluster node", extra={"fields": {"error": repr(exc)}})
            self._close()
            self.subscribed(False)
            return False
        return True

    def wake(self) -> None:
        """From another thread: make a blocked `pump` return."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.add_callback_threadsafe(lambda: None)

    def ack(self, entries: list[AckKey]) -> None:
        """basic.ack the committed messages of the current channel (one `multiple` ack when
        they are the channel's next contiguous tags)."""
        tags = sorted(mid for mid, _qos, epoch in entries if epoch == self.epoch)
        if not tags or not self.connected:
            return
        assert self._channel is not None
        try:
            if tags[-1] - tags[0] + 1 == len(tags) and tags[0] == self._acked_upto + 1:
                self._channel.basic_ack(tags[-1], multiple=True)
            else:
                for tag in tags:
                    self._channel.basic_ack(tag)
            self._acked_upto = max(self._acked_upto, tags[-1])
        except (pika.exceptions.AMQPError, OSError) as exc:
            log.warning(
                "ack not sent; the broker redelivers", extra={"fields": {"error": repr(exc)}}
            )

    def cancel(self) -> bool:
        """Ask for no further messages (those already here stay ours to commit)."""
        if not self.connected or self._channel is None:
            return False
        try:
            self._channel.basic_cancel(self._tag)
        except (pika.exceptions.AMQPError, OSError):
            return False
        self.cancelled = True
        self.subscribed(False)
        return True

    def close(self) -> None:
        """Close; what is not acknowledged goes back to the queue for the other workers."""
        self._close()

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self._acked_upto = 0
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        self.deliver(
            (
                method.delivery_tag,
                1,
                self.epoch,
                method.routing_key.translate(AMQP_SWAP),
                body,
                time.time(),
                time.monotonic(),
            )
        )


def serve(
    settings: Settings,
    client_id: str,
    receive_maximum: int,
    login: tuple[str, ...],
    commands: Connection,
    events: Connection,
) -> None:
    """The receiving process (see `receiver.serve`): a thread reads the worker's commands
    and wakes the consuming loop, which forwards arrivals in chunks."""
    detach(settings)
    logging.getLogger("pika").setLevel(logging.WARNING)  # a line per connection step at INFO
    out = Events(events)
    link = QueueLink(list(login), client_id, receive_maximum, out.deliver, out.subscribed)
    cause = link.connect()
    out.started(cause)
    if cause is not None:
        return
    inbox: queue.SimpleQueue[Command] = queue.SimpleQueue()
    threading.Thread(target=_read_commands, args=(commands, inbox, link), daemon=True).start()
    delay, retry_at = RECONNECT_DELAYS[0], 0.0
    while True:
        if link.connected:
            link.pump(out.wait())
        elif time.monotonic() >= retry_at:
            if link.connect() is None:
                delay = RECONNECT_DELAYS[0]
            else:
                retry_at, delay = time.monotonic() + delay, min(delay * 2, RECONNECT_DELAYS[1])
        else:
            time.sleep(0.05)
        out.forward()
        while not inbox.empty():
            command = inbox.get()
            if isinstance(command, Ack):
                link.ack(command.keys)
            elif isinstance(command, Unsubscribe):
                out.unsubscribed(link.cancel())
            else:
                link.close()
                return


def _read_commands(
    commands: Connection, inbox: queue.SimpleQueue[Command], link: QueueLink
) -> None:
    """Hand the worker's commands to the consuming loop; leave at once if the worker is gone
    (nothing more is acknowledged, so the broker gives the rest to other workers)."""
    try:
        while True:
            inbox.put(commands.recv())
            link.wake()
    except (EOFError, OSError):
        log.warning("ingest worker gone; receiver leaving without acknowledging more")
        os._exit(1)
