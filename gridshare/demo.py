"""`gridshare demo`: the whole platform end to end on the local stack.

Stack up, deploy, provision one pool per device type, then run the simulator in-process for
14 simulated days while the real ingest worker, oracle loop (funding what becomes final)
and API run as child processes; the local chain's clock is moved past the challenge window,
everything final is funded, one investor claims; a summary table per pool. Children are
detached processes with pid files, so an interrupted demo is resumed, not duplicated.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridshare.bridges import demo as bridges_demo
from gridshare.core import db, stack
from gridshare.core.chain.deploy import deploy
from gridshare.core.errors import GridshareError
from gridshare.core.ids import text_id
from gridshare.core.logs import setup_logging
from gridshare.core.settings import Settings, get_settings
from gridshare.core.stack.process import ManagedProcess, port_open
from gridshare.gateway.identity import load_identities
from gridshare.gateway.provision import provision
from gridshare.ingest.metrics import wait_ready
from gridshare.oracle import funding
from gridshare.oracle.context import OracleContext
from gridshare.sim.fleet import Fleet

DAY = 86400
STALL_SECONDS = 60.0  # give up waiting for ingest and the oracle after this long idle


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs; the defaults are `make demo`'s."""

    pools: int = 3
    per_pool: int = 50
    days: int = 14
    wall_seconds: float = 120.0
    interval: float = 900.0  # sim seconds between a device's readings (201,600 in 14 days)
    seed: int = 2026
    claimer: int = 0  # investor index (accounts.json) who claims at the end


class Children:
    """The platform's long-running commands as detached child processes of the demo."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.state_path / "demo"
        self.processes: dict[str, ManagedProcess] = {}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        process = ManagedProcess(
            name,
            pid_file=self.run_dir / f"{name}.pid",
            log_file=self.settings.state_path / "logs" / f"{name}.log",
            exe_name="gridshare",
        )
        self.processes[name] = process
        if process.pid() is None:
            process.start([_gridshare(), *args], env={**self.settings.as_env(), **(env or {})})

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.pid() is None:
                raise RuntimeError(f"demo: `{name}` exited: {process.log_tail()}")

    def stop(self) -> None:
        """Stop the children, including those a previous, interrupted demo left running."""
        for pid_file in sorted(self.run_dir.glob("*.pid")):
            self.processes.setdefault(
                pid_file.stem,
                ManagedProcess(
                    pid_file.stem,
                    pid_file=pid_file,
                    log_file=self.settings.state_path / "logs" / f"{pid_file.stem}.log",
                    exe_name="gridshare",
                ),
            )
        for process in reversed(self.processes.values()):
            process.stop(timeout=30)


def run(settings: Settings, plan: DemoPlan, once: bool, fresh: bool) -> None:
    """The demo (see module docstring). Stops everything it started on exit."""
    console = Console()
    if fresh and settings.db_external:
        _refuse_used_external_database(settings)
    if fresh:
        Children(settings).stop()
        stack.down(settings)
        shutil.rmtree(settings.state_path, ignore_errors=True)
    with console.status("starting the local stack"):
        started = stack.up(settings)
        db.migrate(settings)
    console.print(
        "stack: " + ", ".join(f"{n} {'started' if s else 'running'}" for n, s in started.items())
    )
    with console.status("compiling and deploying contracts"):
        deployed = deploy(settings)
    console.print(f"contracts: {'deployed' if deployed.deployed else 'already deployed'}")
    with console.status("provisioning devices"):
        provisioned = provision(settings, pools=plan.pools, per_pool=plan.per_pool)
    console.print(
        f"devices: {provisioned.devices_total} in pools {', '.join(provisioned.pools)} "
        f"({len(provisioned.devices_created)} new)"
    )
    with console.status("provisioning an OCPP charger and a SunSpec inverter"):
        bridges = bridges_demo.prepare(settings, provisioned.pools)
    console.print(
        f"real hardware: charger {bridges.charger.charger_id} (OCPP 2.0.1) and inverter "
        f"{bridges.inverter_device} (SunSpec) through the bridges"
    )
    children = Children(settings)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        children.start("ingest", ["ingest"])
        if not wait_ready(settings.ingest_metrics_port, timeout=60):
            children.check()
            raise GridshareError("demo: ingest did not subscribe within 60 s; see logs/ingest.log")
        children.start("oracle", ["oracle", "run"], {"GRIDSHARE_ORACLE_AUTO_FUND": "true"})
        children.start("api", ["api"])
        children.start("bridge-ocpp", bridges.ocpp_args)
        if not wait_for_port("127.0.0.1", bridges.ocpp_port, timeout=30):
            children.check()
            raise GridshareError("demo: the OCPP bridge did not listen within 30 s")
        _simulate(settings, plan, provisioned.pools, children, console, bridges)
        ctx = OracleContext.create(settings)
        _pass_challenge_window(ctx, console)
        for pool in provisioned.pools:
            funding.fund(ctx, pool)
        claims = {
            pool: funding.claim(ctx, pool, funding.investor(ctx, str(plan.claimer))).amount
            for pool in provisioned.pools
        }
        console.print(_summary(settings, ctx, provisioned.pools, claims))
        console.print("through the bridges (real protocol peers):")
        console.print(bridges_demo.summary(settings, bridges))
        console.print(f"dashboard and API: http://{settings.api_host}:{settings.api_port}/")
        if not once:
            console.print("serving until Ctrl-C")
            _wait_for_interrupt(children)
    finally:
        children.stop()
        for service in reversed(stack.services(settings)):
            if started[service.name]:
                service.down()


def _pass_challenge_window(ctx: OracleContext, console: Console) -> None:
    """Attested epochs are pending for the challenge window; rather than wait for it, move
    the local chain's clock past it (Anvil's evm_increaseTime), so they are final."""
    window = int(ctx.client.call(ctx.registry.functions.challengePeriod()))
    ctx.client.increase_time(window)
    console.print(f"chain: clock moved {window} s ahead, past the challenge window")


def _refuse_used_external_database(settings: Settings) -> None:
    """`--fresh` empties the state dir (chain, keys), never someone else's database: a fresh
    demo on an external database needs one without gridshare's schema."""
    with db.connect(settings) as conn:
        if db.schema_flavor(conn) is not None:
            raise GridshareError(
                "demo --fresh: the external database at GRIDSHARE_DB_URL already holds a "
                "gridshare schema; give it an empty database or run without --fresh"
            )


def _days_to_simulate(start: float, plan: DemoPlan) -> int:
    """Whole days a resumed fleet can simulate without its clocks passing the present:
    ingest refuses readings from the future (GRIDSHARE_INGEST_MAX_CLOCK_AHEAD_SECONDS) and the
    chain refuses periods that have not ended."""
    available = time.time() - start - 2 * plan.interval
    return max(0, min(plan.days, int(available // DAY)))


def _simulate(
    settings: Settings,
    plan: DemoPlan,
    pools: list[str],
    children: Children,
    console: Console,
    bridges: bridges_demo.DemoBridges,
) -> None:
    """Run the fleet in a thread, and the bridged charger and inverter in another on the
    fleet's clock; show sim time, stored readings and attested epochs until every
    acknowledged reading is stored and every epoch attested (or a bounded wait ends)."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # a first run starts 14 days back at midnight; a resumed one where the last run ended
    resumed = (settings.state_path / "sim" / "checkpoint.json").exists()
    fleet = Fleet(
        settings,
        [i for i in load_identities(settings) if i.device_id not in bridges.device_ids],
        seed=plan.seed,
        speed=1.0,
        interval=plan.interval,
        start=None if resumed else midnight - timedelta(days=plan.days),
    )
    days = _days_to_simulate(fleet.start, plan) if resumed else plan.days
    if days == 0:
        console.print("simulation: the fleet's clocks are at the present; nothing new to simulate")
        return
    # past the last bound by two reading intervals, so every device reports after it and
    # the last epoch closes
    duration = days * DAY + 2 * plan.interval
    fleet.set_speed(duration / plan.wall_seconds)
    runner = threading.Thread(target=fleet.run, args=(duration,), name="fleet")
    peers_stop = threading.Event()
    peers_failed: list[BaseException] = []

    def run_peers() -> None:
        try:
            bridges_demo.run_peers(
                settings, bridges, fleet.sim_now, fleet.start + duration, peers_stop, plan.interval
            )
        except Exception as exc:
            peers_failed.append(exc)

    peers = threading.Thread(target=run_peers, name="bridged-peers")
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress, db.connect(settings, autocommit=True) as conn:
        hours = progress.add_task("simulated hours", total=duration // 3600)
        readings = progress.add_task("readings stored / acknowledged", total=None)
        epochs = {p: progress.add_task(f"epochs attested {p}", total=days) for p in pools}
        stored_before, attested_before = _progress_figures(conn)
        runner.start()
        peers.start()
        last_change, last_figures = time.monotonic(), (0, 0)
        try:
            while True:
                children.check()
                acked = fleet.stats.acked_readings
                stored, attested = _progress_figures(conn)
                stored -= stored_before
                attested = {p: n - attested_before.get(p, 0) for p, n in attested.items()}
                elapsed = min(duration, fleet.sim_now() - fleet.start)
                progress.update(hours, completed=elapsed // 3600)
                progress.update(readings, completed=stored, total=max(acked, stored))
                for pool, task in epochs.items():
                    progress.update(task, completed=attested.get(pool, 0))
                figures = (stored, sum(attested.values()))
                if figures != last_figures:
                    last_change, last_figures = time.monotonic(), figures
                if not runner.is_alive():
                    if stored >= acked and all(attested.get(p, 0) >= days for p in pools):
                        break
                    if time.monotonic() - last_change > STALL_SECONDS:
                        console.print("demo: no progress for a minute; see the logs/ folder")
                        break
                time.sleep(0.5)
        finally:
            fleet.stop()
            runner.join()
            peers_stop.set()
            peers.join()
    if peers_failed:
        raise GridshareError(f"demo: the bridged charger or inverter failed: {peers_failed[0]!r}")


def _progress_figures(conn) -> tuple[int, dict[str, int]]:  # type: ignore[no-untyped-def]
    stored = conn.execute("SELECT coalesce(sum(readings), 0) FROM device_state").fetchone()[0]
    epochs = dict(
        conn.execute(
            "SELECT pool, count(*) FROM oracle_epochs WHERE state = 'confirmed' GROUP BY pool"
        ).fetchall()
    )
    return int(stored), {k: int(v) for k, v in epochs.items()}


def _summary(
    settings: Settings, ctx: OracleContext, pools: list[str], claims: dict[str, int]
) -> Table:
    table = Table(title="gridshare demo per pool (HKD; claimed: investor 0)", box=box.SIMPLE_HEAD)
    table.add_column("pool", no_wrap=True)
    for column in ("devices", "kWh", "revenue", "epochs", "funded", "claimed"):
        table.add_column(column, justify="right", no_wrap=True)
    with db.connect(settings, autocommit=True) as conn:
        for pool in pools:
            devices = conn.execute(
                "SELECT count(*) FROM devices WHERE pool = %s", (pool,)
            ).fetchone()[0]
            epochs, energy, revenue = conn.execute(
                "SELECT count(*), coalesce(sum(energy_wh), 0), coalesce(sum(revenue_minor), 0) "
                "FROM oracle_epochs WHERE pool = %s AND state = 'confirmed'",
                (pool,),
            ).fetchone()
            funded = int(ctx.client.call(ctx.registry.functions.funded(text_id(pool))))
            table.add_row(
                pool,
                str(devices),
                f"{int(energy) / 1000:,.0f}",
                f"{int(revenue) / 100:,.0f}",
                str(epochs),
                f"{funded / 1e6:,.0f}",
                f"{claims[pool] / 1e6:,.0f}",
            )
    return table


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.2)
    return False


def _wait_for_interrupt(children: Children) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            children.check()
            time.sleep(1.0)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM behaves like Ctrl-C: unwind, stopping every process the demo started."""
    raise KeyboardInterrupt


def _gridshare() -> str:
    local = Path(sys.executable).parent / "gridshare"
    return str(local) if local.exists() else (shutil.which("gridshare") or "gridshare")


def demo_command(
    once: bool = typer.Option(False, "--once", help="Exit after printing the summary."),
    fresh: bool = typer.Option(False, "--fresh", help="Start from an empty state dir."),
) -> None:
    """Everything end to end on the local stack, then keep the API up until Ctrl-C."""
    setup_logging("WARNING")  # the progress display speaks; children log to files
    run(get_settings(), DemoPlan(), once=once, fresh=fresh)
