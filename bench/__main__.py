"""`make bench`: run every benchmark in its own process, then summarise against the targets.

Each bench/<name>.py writes bench/results/<name>.json; this runner writes
bench/results/SUMMARY.md with each targeted figure, its target and whether it was met.
"""

from __future__ import annotations

import json
import operator
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).parent
RESULTS = BENCH_DIR / "results"
ORDER = ["gas", "ingest", "oracle", "api", "sim"]

# (result file, dotted path into its JSON, comparison, target, what it means)
TARGETS: list[tuple[str, str, str, float, str]] = [
    ("gas", "gas.attestation_submit_3of5", "<=", 150_000, "attestation submit 3-of-5, gas"),
    ("gas", "gas.claim", "<=", 50_000, "claim, gas"),
    ("gas", "gas.transfer", "<=", 90_000, "allow-listed transfer, gas"),
    ("ingest", "fleets.1000.committed_msgs_per_s", ">=", 5_000, "ingest 1k devices, msg/s"),
    ("ingest", "fleets.10000.committed_msgs_per_s", ">=", 5_000, "ingest 10k devices, msg/s"),
    ("ingest", "fleets.1000.share_of_slower_raw_limit", ">=", 0.5, "ingest vs slower raw limit"),
    ("oracle", "seconds.total", "<=", 5.0, "oracle epoch, 10k devices, seconds"),
    (
        "api",
        "device_state_p99_ms_at_500_rps",
        "<=",
        50.0,
        "device state p99 at 500 rps, ms",
    ),
    ("bridge", "answer_ms.p99", "<=", 1000.0, "OCPP bridge p99 answer, 1k chargers, ms"),
]

COMPARE: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


def run_all() -> dict[str, float]:
    """Run each benchmark script; return {name: seconds it took}."""
    scripts = sorted(
        (p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_")),
        key=lambda p: ORDER.index(p.stem) if p.stem in ORDER else len(ORDER),
    )
    took: dict[str, float] = {}
    for script in scripts:
        started = time.monotonic()
        print(f"bench: {script.stem} …", flush=True)
        result = subprocess.run([sys.executable, str(script)], check=False)
        took[script.stem] = time.monotonic() - started
        if result.returncode != 0:
            print(f"bench: {script.stem} failed with exit code {result.returncode}", flush=True)
    return took


def lookup(data: Any, dotted: str) -> float | None:
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return float(data) if isinstance(data, int | float) else None


def summary(took: dict[str, float]) -> str:
    lines = [
        "# Benchmark summary",
        "",
        "Figures from `make bench` on this machine (2 cores, shared); each run's full JSON is",
        "beside this file.",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]
    for name, path, op, bound, meaning in TARGETS:
        file = RESULTS / f"{name}.json"
        value = lookup(json.loads(file.read_text()), path) if file.exists() else None
        if value is None:
            lines.append(f"| {meaning} (`{name}.{path}`) | missing | {op} {bound:g} | no |")
            continue
        met = "yes" if COMPARE[op](value, bound) else "no"
        lines.append(f"| {meaning} (`{name}.{path}`) | {value:,.2f} | {op} {bound:g} | {met} |")
    lines += ["", "| benchmark | wall seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in took.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    took = run_all()
    text = summary(took)
    (RESULTS / "SUMMARY.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
