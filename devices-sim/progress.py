"""Progress of a fleet run: a live rich table on a terminal, structured log lines otherwise."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

log = logging.getLogger("gridshare.sim")


class LiveTable:
    """A rich Live display refreshed from fleet snapshots (use as a context manager)."""

    def __init__(self, console: Console) -> None:
        self.live = Live(Table(), console=console, refresh_per_second=2, transient=False)
        self.last: tuple[float, int] = (time.monotonic(), 0)

    def __enter__(self) -> LiveTable:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def __call__(self, snap: dict[str, Any]) -> None:
        now = time.monotonic()
        then, acked_then = self.last
        rate = (snap["acked"] - acked_then) / max(1e-6, now - then)
        self.last = (now, snap["acked"])
        table = Table(title=f"gridshare sim {snap['run_id']}", show_header=False, min_width=60)
        table.add_column(style="bold")
        table.add_column()
        rows = [
            ("phase", f"{snap['phase']} (wall {snap['wall_seconds']:.0f}s)"),
            ("sim time", f"{snap['sim_now']}  x{snap['speed']:g}  lag {snap['lag_seconds']:g}s"),
            ("devices", f"{snap['online']} online of {snap['devices']}"),
            ("published", f"{snap['published']:,}  (generated {snap['generated']:,})"),
            ("acked", f"{snap['acked']:,}  ({rate:,.0f}/s)  readings {snap['acked_readings']:,}"),
            ("in flight / buffered", f"{snap['in_flight']:,} / {snap['buffered']:,}"),
            ("refused / dropped", f"{snap['refused']:,} / {snap['dropped']:,}"),
            ("connects", f"{snap['connects']:,} ({snap['reconnects']:,} after loss)"),
            ("connect failures", f"{snap['connect_failures']:,}"),
            ("faults", ", ".join(f"{k} {v:,}" for k, v in sorted(snap["faults"].items())) or "-"),
        ]
        for name, value in rows:
            table.add_row(name, value)
        self.live.update(table)


def log_lines(every: float = 5.0) -> Callable[[dict[str, Any]], None]:
    """A progress callback writing one structured line every `every` seconds."""
    state = {"next": 0.0}

    def report(snap: dict[str, Any]) -> None:
        now = time.monotonic()
        if now < state["next"]:
            return
        state["next"] = now + every
        fields = {k: snap[k] for k in PROGRESS_FIELDS}
        log.info("sim progress", extra={"fields": fields})

    return report


PROGRESS_FIELDS = (
    "phase", "sim_now", "online", "generated", "published", "acked", "acked_readings",
    "in_flight", "buffered", "refused", "dropped", "reconnects", "faults", "lag_seconds",
)  # fmt: skip
