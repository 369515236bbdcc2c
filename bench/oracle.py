"""Seconds to compute, sign (3 of 5) and submit one epoch of a 10,000-device pool with a day
of 5-minute readings (2.88 M rows), every signer checking the signature of every reading that
determines a leaf against the device's on-chain key, and the gas of that attestation against
a 10-device one.

Starts a private PostgreSQL and Anvil (free ports, temporary state dir), deploys, registers
the devices on-chain with their own keys, stores every reading signed by its device as ingest
stores it (`_signed_telemetry.py`: generated once, then loaded from its cache), then VACUUM
ANALYZE, as autovacuum would do to a table after such a load in production (statistics for
the planner, and the visibility map that lets the oracle's period query read
`telemetry_oracle_idx` without visiting the heap), and runs the oracle's real attestation
step. Each phase is reported in wall seconds and in CPU seconds, of this process (the oracle
and its signer threads) and of the database server (all its processes), since the machine is
shared and wall time alone moves with other work. Prints JSON; a run of the full pool writes
bench/results/oracle.json (`--devices N` runs a smaller pool, for profiling, and writes
nothing). Target: under 10 s with the signature checks; gas independent of the device
count; no device excluded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _signed_telemetry as telemetry

from gridshare.core import db
from gridshare.core.chain.deploy import deploy
from gridshare.core.chain.pools import create_pool, register_devices
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key
from gridshare.core.stack.anvil import Anvil
from gridshare.core.stack.postgres import Postgres
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext

RESULTS = Path(__file__).resolve().parent / "results" / "oracle.json"
DEVICES = 10_000
TARGET_SECONDS = 10.0
PHASES = {
    "epoch computed": "computed",
    "epoch signed": "signed",
    "attestation broadcast": "broadcast",
    "epoch confirmed": "confirmed",
}
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_cpu(pid: int) -> float:
    """CPU seconds of a server process and its children, live and exited (from /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile: its time is in its parent's cutime now
        own, parent = int(stat.parent.name), int(fields[1])
        if own == pid:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif parent == pid:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


@dataclass(frozen=True)
class Mark:
    """A moment of the run: wall clock, this process's CPU, the database server's CPU."""

    wall: float
    cpu: float
    db_cpu: float


class PhaseClock(logging.Handler):
    """A Mark at each state-machine log line (the oracle logs every transition)."""

    def __init__(self, db_pid: int) -> None:
        super().__init__()
        self.db_pid = db_pid
        self.marks: dict[str, Mark] = {}

    def now(self) -> Mark:
        return Mark(time.perf_counter(), time.process_time(), server_cpu(self.db_pid))

    def emit(self, record: logging.LogRecord) -> None:
        phase = PHASES.get(record.getMessage())
        if phase:
            self.marks[phase] = self.now()


def phase(first: Mark, last: Mark) -> dict[str, float]:
    return {
        "wall": round(last.wall - first.wall, 3),
        "cpu_oracle": round(last.cpu - first.cpu, 3),
        "cpu_database": round(last.db_cpu - first.db_cpu, 3),
    }


def make_pool(settings: Settings, conn: psycopg.Connection, name: str, devices: int) -> None:
    """A pool on-chain and in the database, its devices registered on-chain with their own
    keys, and a day of signed readings per device."""
    record = create_pool(settings, name, "charging_pile", 5_000)
    conn.execute(
        "INSERT INTO pools (name, pool_id, device_type, share_bps, token_address)"
        " VALUES (%s, %s, 'charging_pile', 5000, %s)",
        (name, record.pool_id, record.token),
    )
    ids = telemetry.device_ids(name, devices)
    addresses = [address_for_key(telemetry.device_key(d)) for d in ids]
    with conn.cursor().copy("COPY devices (device_id, type, pool, address) FROM STDIN") as copy:
        for device_id, address in zip(ids, addresses, strict=True):
            copy.write_row((device_id, "charging_pile", name, address))
    register_devices(settings, [(d, a, name) for d, a in zip(ids, addresses, strict=True)])
    telemetry.load(settings.db_url, name, ids)


def one_computation(ctx: OracleContext, clock: PhaseClock) -> tuple[dict[str, float], int]:
    """One signer's recomputation of the big pool's epoch 1 alone (a fresh signer: its own
    key history read from the chain, every determining reading recovered), and how many
    readings it checked."""
    signer = ctx.signer(ctx.accounts.oracles[0])
    began = clock.now()
    prepared = signer.prepare("charging-pile-1", 1)
    done = clock.now()
    assert prepared.computed is not None, prepared.detail
    return phase(began, done), sum(len(f.determining) for f in prepared.computed.devices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=DEVICES, help="devices of the big pool")
    devices = parser.parse_args().devices
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="gridshare-bench-oracle-") as tmp:
        settings = Settings(
            state_dir=Path(tmp) / "state",
            db_url=f"postgresql://gridshare@127.0.0.1:{free_port()}/gridshare",
            rpc_url=f"http://127.0.0.1:{free_port()}",
        )
        postgres = Postgres(settings)
        services = [postgres, Anvil(settings)]
        for service in services:
            service.up()
        try:
            pid = postgres.process.pid()
            assert pid is not None
            clock = PhaseClock(pid)
            logging.getLogger("gridshare.oracle").addHandler(clock)
            logging.getLogger("gridshare.oracle").setLevel(logging.INFO)
            result = run(settings, clock, devices)
        finally:
            for service in reversed(services):
                service.down()
    if devices == DEVICES:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()
    sys.exit(0 if result["target_met"] else 1)


def run(settings: Settings, clock: PhaseClock, devices: int) -> dict[str, object]:
    db.migrate(settings)
    deploy(settings)
    with db.connect(settings, autocommit=True) as conn:
        started = time.perf_counter()
        make_pool(settings, conn, "charging-pile-1", devices)
        make_pool(settings, conn, "charging-pile-2", 10)
        conn.execute("VACUUM ANALYZE telemetry")
        rows = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        load_seconds = time.perf_counter() - started
    ctx = OracleContext.create(settings.model_copy(update={"oracle_metrics_port": 0}))
    ctx.threshold  # noqa: B018 - one chain call outside the timed section

    load_before = os.getloadavg()[0]  # other work on this machine skews the figures
    began = clock.now()
    big = attest_next(ctx, "charging-pile-1")
    ended = clock.now()
    marks = dict(clock.marks)
    small = attest_next(ctx, "charging-pile-2")
    single, checked = one_computation(ctx, clock)
    with db.connect(settings, autocommit=True) as conn:
        gas = dict(conn.execute("SELECT pool, gas_used FROM oracle_epochs").fetchall())
        excluded = conn.execute(
            "SELECT count(*) FROM oracle_leaves WHERE pool = 'charging-pile-1' AND excluded <> ''"
        ).fetchone()
    phases = {
        # three signers recompute in parallel, each on its own connection with its own view
        # of the chain; the agreed result is stored (leaves COPYed) and checked by the guard
        "compute_by_3_signers_and_store": phase(began, marks["computed"]),
        "sign_3_of_5": phase(marks["computed"], marks["signed"]),
        "submit_and_confirm": phase(marks["signed"], marks["confirmed"]),
        "total": phase(began, ended),
        # for scale: one signer's recomputation of the same epoch, alone
        "one_computation_alone": single,
    }
    total = phases["total"]["wall"]
    return {
        "devices": devices,
        "readings": rows[0] if rows else 0,
        "load_seconds": round(load_seconds, 1),
        "outcome": big.status,
        "excluded_devices": excluded[0] if excluded else None,
        "seconds": {name: p["wall"] for name, p in phases.items()},
        "cpu_seconds": {
            name: {"oracle": p["cpu_oracle"], "database": p["cpu_database"]}
            for name, p in phases.items()
        },
        "signature_checks_per_signer": checked,
        "load_average_1m_before": round(load_before, 2),
        "cpu_cores": os.cpu_count(),
        "target_seconds": TARGET_SECONDS,
        "target_met": big.status == "confirmed"
        and total < TARGET_SECONDS
        and excluded is not None
        and excluded[0] == 0,
        "gas": {
            f"attestation_{devices}_devices": gas.get("charging-pile-1"),
            "attestation_10_devices": gas.get("charging-pile-2"),
            "small_outcome": small.status,
        },
    }


if __name__ == "__main__":
    main()
