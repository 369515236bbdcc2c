"""What every benchmark shares: a private stack on free ports in a temporary state dir (its
services started in order and stopped in reverse, whatever happens), paced publishing, and
the ending: bench/results/<name>.json written, the JSON printed, exit code 1 on a miss.

Benchmarks run as scripts (`python bench/<name>.py`, which is how `make bench` runs them), so
they import this module as `_common`.
"""

from __future__ import annotations

import array
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gridshare.core import stack
from gridshare.core.settings import Settings
from gridshare.core.stack.process import free_port
from gridshare.core.stack.service import LocalService

RESULTS = Path(__file__).resolve().parent / "results"
Service = Callable[[Settings], LocalService]


def stack_settings(state_dir: Path, **overrides: Any) -> Settings:
    """Settings for a private stack in `state_dir`: every service on a free port."""
    return Settings(
        state_dir=state_dir,
        db_url=f"postgresql://gridshare@127.0.0.1:{free_port()}/gridshare",
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        mqtt_device_url=f"mqtts://127.0.0.1:{free_port()}",
        rpc_url=f"http://127.0.0.1:{free_port()}",
        **overrides,
    )


@contextmanager
def private_stack(
    name: str, services: Sequence[Service] | None, **overrides: Any
) -> Iterator[tuple[Settings, Path]]:
    """Settings on free ports and the temporary directory holding their state dir; runs
    `services` (None: the whole local stack) for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix=f"gridshare-bench-{name}-") as tmp:
        settings = stack_settings(Path(tmp) / "state", **overrides)
        if services is None:
            try:
                stack.up(settings)
                yield settings, Path(tmp)
            finally:
                stack.down(settings)
            return
        running = [service(settings) for service in services]
        try:
            for service in running:
                service.up()
            yield settings, Path(tmp)
        finally:
            for service in reversed(running):
                service.down()


def publish_paced(
    messages: Sequence[tuple[str, bytes]], publish: Callable[[int, str, bytes], Any], rate: float
) -> array.array:
    """Call `publish(index, topic, payload)` for each message, as fast as possible or at
    `rate` a second; the wall time of each publish."""
    times = array.array("d", bytes(8 * len(messages)))
    started = time.monotonic()
    for index, (topic, payload) in enumerate(messages):
        if rate:
            ahead = index / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        times[index] = time.time()
        publish(index, topic, payload)
    return times


def load_average() -> float:
    """The 1-minute load average (2 shared cores: other work shows here)."""
    return round(os.getloadavg()[0], 2)


def conditions(name: str, db_flavor: str, load_at_start: float) -> dict[str, Any]:
    """The head of a database benchmark's result: what ran, on what, under what load."""
    return {
        "benchmark": name,
        "cpus": os.cpu_count(),
        "db_flavor": db_flavor,
        "loadavg_1m_at_start": load_at_start,
        "loadavg_1m": load_average(),
    }


def finish(
    name: str, result: dict[str, Any], met: bool = True, missed: str = "", save: bool = True
) -> None:
    """Write bench/results/<name>.json (unless not `save`), print the result, and exit 1
    when a target was not `met` (saying `missed` on stderr, if given)."""
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not met:
        if missed:
            print(f"bench {name}: target missed: {missed}", file=sys.stderr)
        sys.exit(1)
