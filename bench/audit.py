"""Seconds `gridshare audit` takes to re-check an attested epoch of a 10,000-device pool from
the public API and the chain: every determining reading's signature against the device's
on-chain key, every leaf recomputed by the meter rule, the Merkle root rebuilt and compared.

Starts a private PostgreSQL and Anvil (free ports, temporary state dir), loads the same pool
as bench/oracle.py (a day of signed 5-minute readings per device), attests epoch 1 with the
real oracle, starts `gridshare api` and times `gridshare audit --json` as a child process (its
start-up included). Prints JSON and writes bench/results/audit.json; exits non-zero when the
audit fails or takes 60 s or more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from gridshare.core import db
from gridshare.core.chain.deploy import deploy
from gridshare.core.settings import Settings
from gridshare.core.stack.anvil import Anvil
from gridshare.core.stack.postgres import Postgres
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/oracle.py: the same pool, loaded the same way
import oracle as oracle_bench

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"
GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))
POOL = "charging-pile-1"
TARGET_SECONDS = 60.0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gridshare-bench-audit-") as tmp:
        port = oracle_bench.free_port
        settings = Settings(
            state_dir=Path(tmp) / "state",
            db_url=f"postgresql://gridshare@127.0.0.1:{port()}/gridshare",
            rpc_url=f"http://127.0.0.1:{port()}",
            api_port=port(),
        )
        services = [Postgres(settings), Anvil(settings)]
        for service in services:
            service.up()
        try:
            result = run(settings, Path(tmp))
        finally:
            for service in reversed(services):
                service.down()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()
    sys.exit(0 if result["target_met"] else 1)


def run(settings: Settings, tmp: Path) -> dict[str, object]:
    db.migrate(settings)
    deploy(settings)
    with db.connect(settings, autocommit=True) as conn:
        started = time.perf_counter()
        oracle_bench.make_pool(settings, conn, POOL, oracle_bench.DEVICES)
        conn.execute("VACUUM ANALYZE telemetry")
        load_seconds = time.perf_counter() - started
    ctx = OracleContext.create(settings.model_copy(update={"oracle_metrics_port": 0}))
    outcome = attest_next(ctx, POOL)
    if outcome.status != "confirmed":
        return {"error": outcome.message, "target_met": False}
    env = {**os.environ, **settings.as_env()}
    with open(tmp / "api.log", "w") as log:
        api = subprocess.Popen([GRIDSHARE, "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        wait_healthy(base)
        load_before = os.getloadavg()[0]
        began = time.perf_counter()
        done = subprocess.run(
            [
                GRIDSHARE,
                "audit",
                "--pool",
                POOL,
                "--epoch",
                "1",
                "--api",
                base,
                "--rpc",
                settings.rpc_url,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": os.environ["PATH"]},
        )
        seconds = time.perf_counter() - began
    finally:
        api.terminate()
        api.wait(15)
    if done.returncode not in (0, 1):
        return {"error": done.stderr[-500:], "target_met": False}
    report = json.loads(done.stdout)
    devices = report["devices"]
    return {
        "devices": len(devices),
        "load_seconds": round(load_seconds, 1),
        "audit_ok": report["ok"],
        "devices_ok": sum(1 for d in devices if d["ok"]),
        "signatures_verified": sum(d["signatures_verified"] for d in devices),
        "seconds": round(seconds, 3),
        "load_average_1m_before": round(load_before, 2),
        "cpu_cores": os.cpu_count(),
        "target_seconds": TARGET_SECONDS,
        "target_met": report["ok"] and seconds < TARGET_SECONDS,
    }


def wait_healthy(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gridshare api did not come up")


if __name__ == "__main__":
    main()
