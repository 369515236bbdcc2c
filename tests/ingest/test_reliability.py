"""Nothing lost, nothing doubled: devices publish while the worker is killed, the broker is
restarted, the database is restarted; two workers share one stream."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from gridshare.core import db
from gridshare.core.settings import Settings
from gridshare.core.stack.mosquitto import Mosquitto
from gridshare.core.stack.postgres import Postgres
from tests.ingest.fleet import (
    Device,
    IngestProcess,
    Pacer,
    Publisher,
    register,
    stored,
    wait_until,
)

pytestmark = pytest.mark.slow
DEVICES, READINGS, RATE = 40, 50, 400.0  # 2,000 messages over about 5 s


def count(settings: Settings, devices: list[Device]) -> tuple[int, int]:
    """(rows, distinct keys) on a fresh connection (the database may have restarted)."""
    try:
        with db.connect(settings) as conn:
            return stored(conn, devices)
    except Exception:
        return -1, -1


def publish_through(
    settings: Settings, conn, publisher: Publisher, fault: Callable[[], None]
) -> list[Device]:
    """Publish every device's readings in seq order at RATE, inject `fault` a third of the
    way through, and return once exactly the published set is stored."""
    devices = register(conn, DEVICES)
    messages = [(d.topic, d.reading(seq)) for seq in range(1, READINGS + 1) for d in devices]
    pacer = Pacer(publisher, messages, RATE)
    pacer.start()
    wait_until(lambda: pacer.sent > len(messages) // 3, 30, "publishing under way")
    fault()
    pacer.join(60)
    publisher.flush(timeout=120)
    total = len(messages)
    wait_until(lambda: count(settings, devices)[0] >= total, 120, "every reading stored")
    time.sleep(1)  # late copies would show up now
    assert count(settings, devices) == (total, total)
    return devices


def test_kill_9_while_publishing_then_restart(stack_settings, conn, ingest_worker, publisher):
    worker = ingest_worker()

    def crash_and_restart() -> None:
        worker.kill()
        time.sleep(0.5)
        worker.start()  # same worker name: same client id, the broker's session redelivers

    publish_through(stack_settings, conn, publisher, crash_and_restart)
    assert worker.stop() == 0


def test_sigterm_and_restart_while_publishing(stack_settings, conn, ingest_worker, publisher):
    worker = ingest_worker(retire=False)

    def stop_and_restart() -> None:
        assert worker.stop(timeout=30) == 0  # stops promptly, though messages keep coming
        worker.start()  # the kept session held what was published meanwhile

    publish_through(stack_settings, conn, publisher, stop_and_restart)
    assert worker.stop() == 0
    ingest_worker(worker.worker)  # the same session once more, retired at the end


def test_broker_restart_while_publishing(stack_settings, conn, ingest_worker, publisher):
    worker = ingest_worker()
    broker = Mosquitto(stack_settings)

    def restart_broker() -> None:
        broker.down()
        time.sleep(1)
        broker.up()

    publish_through(stack_settings, conn, publisher, restart_broker)
    assert worker.alive()
    assert worker.stop() == 0


def test_database_restart_while_publishing(stack_settings, conn, ingest_worker, publisher):
    if stack_settings.db_external:
        pytest.skip("the database is external: this run does not own its server")
    worker = ingest_worker()
    database = Postgres(stack_settings)
    listener = db.connect(stack_settings, autocommit=True)

    def restart_database() -> None:
        database.down()
        time.sleep(2)
        database.up()

    try:
        publish_through(stack_settings, conn, publisher, restart_database)
    finally:
        listener.close()
    assert worker.alive()
    assert '"database error; batch not acknowledged"' in worker.log()
    assert worker.stop() == 0


def test_two_workers_share_the_load(stack_settings, conn, ingest_worker, publisher):
    workers = [ingest_worker(ingest_shared="true"), ingest_worker(ingest_shared="true")]
    devices = register(conn, 50)
    for seq in range(1, 61):
        for device in devices:
            publisher.publish(device.topic, device.reading(seq))
    publisher.flush()
    total = len(devices) * 60
    wait_until(lambda: count(stack_settings, devices)[0] >= total, 120, "every reading stored")
    time.sleep(1)
    assert count(stack_settings, devices) == (total, total)
    shares = [_stopped_totals(w) for w in workers]
    assert all(share["stored"] > 0 for share in shares), shares
    assert sum(share["stored"] for share in shares) == total


def _stopped_totals(worker: IngestProcess) -> dict:
    assert worker.stop() == 0
    return json.loads(worker.log().strip().splitlines()[-1])
