"""`make bench`: run every benchmark in its own process, then summarise against the targets.

Each bench/<name>.py writes bench/results/<name>.json and exits non-zero when it fails or misses
a target. This runner stamps each result with when and on what load it was measured, writes
bench/results/SUMMARY.md from the figures of this run only (a benchmark that failed shows its
error line, never an older run's figures), and exits non-zero when any benchmark failed or any
target was missed.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).parent
RESULTS = BENCH_DIR / "results"
ORDER = ["gas", "ingest", "ingest_flood", "oracle", "audit", "api", "sim"]
# results that come from another mode of a script: {result name: (script, argument)}
MODES = {"ingest_flood": ("ingest", "flood")}

# (result file, dotted path into its JSON, comparison, target, what it means)
TARGETS: list[tuple[str, str, str, float, str]] = [
    ("gas", "gas.attestation_submit_3of5", "<=", 150_000, "attestation submit 3-of-5, gas"),
    ("gas", "gas.claim", "<=", 50_000, "claim, gas"),
    ("gas", "gas.transfer", "<=", 90_000, "allow-listed transfer, gas"),
    ("ingest", "fleets.1000.committed_msgs_per_s", ">=", 5_000, "ingest 1k devices, msg/s"),
    ("ingest", "fleets.10000.committed_msgs_per_s", ">=", 5_000, "ingest 10k devices, msg/s"),
    ("ingest", "fleets.1000.share_of_slower_raw_limit", ">=", 0.5, "ingest vs slower raw limit"),
    ("ingest", "fleets.1000.evidence_cost_share", "<=", 0.10, "evidence cost, 1k devices, share"),
    ("ingest", "fleets.10000.evidence_cost_share", "<=", 0.10, "evidence cost, 10k devices, share"),
    ("oracle", "seconds.total", "<=", 10.0, "oracle epoch, 10k devices, signatures checked, s"),
    ("audit", "seconds", "<=", 60.0, "gridshare audit of a 10k-device epoch, s"),
    (
        "api",
        "device_state_p99_ms_at_500_rps",
        "<=",
        50.0,
        "device state p99 at 500 rps, ms",
    ),
    ("bridge", "answer_ms.p99", "<=", 1000.0, "OCPP bridge p99 answer, 1k chargers, ms"),
    ("bridge", "every_message_stored", ">=", 1, "OCPP bridge, every message stored"),
    ("cluster", "meets_target", ">=", 1, "cluster, 2 workers >= half of 1 Mosquitto worker"),
    (
        "ingest_flood",
        "quarantine_rows_stored",
        "<=",
        24,
        "10,000 bad 16 KiB messages: quarantine rows stored",
    ),
]

COMPARE: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Outcome:
    """One benchmark process of this run."""

    name: str
    seconds: float
    exit_code: int
    last_error: str  # the last line it wrote to stderr (its one-line reason when it failed)
    fresh: bool  # it wrote its result file during this run

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.fresh


def runs() -> list[tuple[str, list[str]]]:
    """(result name, command) of every benchmark and mode, in ORDER, then the others."""
    found = [p.stem for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_")]
    commands = {name: [str(BENCH_DIR / f"{name}.py")] for name in found}
    for name, (script, mode) in MODES.items():
        if script in commands:
            commands[name] = [str(BENCH_DIR / f"{script}.py"), mode]
    rank = {name: ORDER.index(name) if name in ORDER else len(ORDER) for name in commands}
    return sorted(commands.items(), key=lambda item: (rank[item[0]], item[0]))


def run_one(name: str, command: list[str]) -> Outcome:
    """Run a benchmark, echoing its stderr, and stamp its result with time and load."""
    result_file = RESULTS / f"{name}.json"
    started_at, load_before = time.time(), os.getloadavg()[0]
    started = time.monotonic()
    print(f"bench: {name} …", flush=True)
    proc = subprocess.Popen([sys.executable, *command], stderr=subprocess.PIPE, text=True)
    last_error = ""
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.strip():
            last_error = line.strip()
    exit_code = proc.wait()
    seconds = time.monotonic() - started
    fresh = result_file.exists() and result_file.stat().st_mtime >= started_at
    if fresh:
        _stamp(result_file, started_at, seconds, load_before)
    if exit_code != 0:
        print(f"bench: {name} failed with exit code {exit_code}", flush=True)
    return Outcome(name, seconds, exit_code, last_error, fresh)


def _stamp(result_file: Path, started_at: float, seconds: float, load_before: float) -> None:
    """When, how long and on what load (1-minute load average before and after; 2 cores)."""
    data = json.loads(result_file.read_text())
    data["measured"] = {
        "at": datetime.fromtimestamp(started_at, UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "commit": _commit(),
    }
    result_file.write_text(json.dumps(data, indent=2) + "\n")


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def lookup(data: Any, dotted: str) -> float | None:
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return float(data) if isinstance(data, int | float) else None


def summary(outcomes: dict[str, Outcome]) -> tuple[str, bool]:
    """SUMMARY.md from this run's figures only, and whether every target was met."""
    lines = [
        "# Benchmark summary",
        "",
        "Figures of the last `make bench` (2 cores, shared; when and on what load is in each",
        "result's `measured`). A benchmark that failed in that run shows its error, not figures.",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]
    all_met = True
    for name, path, op, bound, meaning in TARGETS:
        outcome = outcomes.get(name)
        figure = f"{meaning} (`{name}.{path}`)"
        if outcome is None or not outcome.fresh:
            reason = outcome.last_error if outcome else "not run"
            lines.append(f"| {figure} | failed: {_cell(reason)} | {op} {bound:g} | no |")
            all_met = False
            continue
        value = lookup(json.loads((RESULTS / f"{name}.json").read_text()), path)
        met = value is not None and COMPARE[op](value, bound)
        all_met &= met
        shown = "missing" if value is None else f"{value:,.2f}"
        lines.append(f"| {figure} | {shown} | {op} {bound:g} | {'yes' if met else 'no'} |")
    lines += ["", "| benchmark | exit code | wall seconds |", "|---|---|---|"]
    for outcome in outcomes.values():
        status = str(outcome.exit_code) if outcome.fresh else f"{outcome.exit_code}, no result"
        lines.append(f"| {outcome.name} | {status} | {outcome.seconds:.0f} |")
    return "\n".join(lines) + "\n", all_met


def _cell(text: str) -> str:
    return text.replace("|", "/")[:160]


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    outcomes = {name: run_one(name, command) for name, command in runs()}
    text, all_met = summary(outcomes)
    (RESULTS / "SUMMARY.md").write_text(text)
    print(text)
    failed = [o.name for o in outcomes.values() if not o.ok]
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    if not all_met:
        print("bench: some targets were missed (see SUMMARY.md)", file=sys.stderr)
    return 1 if failed or not all_met else 0


if __name__ == "__main__":
    sys.exit(main())
