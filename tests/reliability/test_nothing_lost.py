"""One simulated run with every failure we promise to survive, then the books are checked.

During the run: `kill -9` of the ingest worker, a Mosquitto restart, a PostgreSQL restart,
the oracle killed between broadcasting an attestation and its confirmation, and every fault
of SPEC §5 from the simulator. Afterwards: every reading the broker acknowledged is stored
exactly once; every closed epoch is attested exactly once; on-chain totals equal a
recomputation from the stored readings; no holder can claim more than their share; the
quarantine holds every bad message with its reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from gridshare.core import db, stack
from gridshare.core.chain.deploy import deploy
from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.core.stack.process import ManagedProcess
from gridshare.gateway.identity import load_identities
from gridshare.gateway.provision import provision
from gridshare.ingest.metrics import wait_ready
from gridshare.oracle import funding
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.sim.faults import FaultPlan
from gridshare.sim.fleet import Fleet, read_acked
from tests.oracle.crashing_oracle import ROOT, command
from tests.support import stack_settings_for

pytestmark = pytest.mark.slow

PERIOD = 86400
# Three hours past the last period bound: a `skew` fault moves a device's clock back by up to
# an hour for up to an hour of readings, and the oracle rightly waits while any device's latest
# reading is before the bound, so half an hour past it left the last epoch open at random.
SIM_SECONDS = 4 * PERIOD + 3 * 3600
WALL_SECONDS = 60.0
GRIDSHARE = str(Path(sys.executable).parent / "gridshare")
EXPECTED_REASON = {
    "badsig": "bad_signature",
    "reset": "meter_regression",
    "garbage:not_json": "parse_error",
    "garbage:invalid_utf8": "parse_error",
    "garbage:nan": "parse_error",
    "garbage:blob_oversize": "too_large",
    "garbage:wrong_types": "schema_error",
}


@dataclass
class Run:
    """What the scenario produced, for the assertions."""

    settings: Settings
    pools: list[str]
    acked: dict[str, list[tuple[str, int]]]
    disruptions: list[str] = field(default_factory=list)
    crashed_oracle_exit: int | None = None
    oracle_outcomes: list[str] = field(default_factory=list)
    sim_end: int = 0  # unix seconds, device time


def ingest_process(settings: Settings) -> ManagedProcess:
    return ManagedProcess(
        "ingest",
        pid_file=settings.state_path / "run" / "ingest.pid",
        log_file=settings.state_path / "logs" / "ingest.log",
        exe_name="gridshare",
    )


def wait_until_stored(settings: Settings, wanted: set[tuple[str, int]], timeout: float) -> None:
    """Wait until every wanted reading is stored, or nothing new arrived for 30 s (the
    assertions then say what is missing)."""
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        stored = set(stored_keys(settings))
        if wanted <= stored:
            return
        if len(stored) != last_count:
            last_count, last_change = len(stored), time.monotonic()
        elif time.monotonic() - last_change > 30:
            return
        time.sleep(1.0)


def stored_keys(settings: Settings) -> list[tuple[str, int]]:
    with db.connect(settings) as conn:
        return [(r[0], int(r[1])) for r in conn.execute("SELECT device_id, seq FROM telemetry")]


def disrupt(settings: Settings, fleet: Fleet, run: Run) -> None:
    """Kill and restart the pieces at fixed points of simulated progress."""
    ingest = ingest_process(settings)
    plan = [
        (0.2, "kill -9 ingest", lambda: _kill_ingest(settings, ingest)),
        (0.4, "restart mosquitto", lambda: _restart(stack.Mosquitto(settings))),
        (0.6, "restart postgres", lambda: _restart(stack.Postgres(settings))),
    ]
    for fraction, name, action in plan:
        while (fleet.sim_now() - fleet.start) < fraction * SIM_SECONDS:
            time.sleep(0.2)
        action()
        run.disruptions.append(name)


def _kill_ingest(settings: Settings, ingest: ManagedProcess) -> None:
    pid = ingest.pid()
    assert pid is not None, ingest.log_tail()
    os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)
    ingest.start([GRIDSHARE, "ingest"], env=_ingest_env(settings))


def _ingest_env(settings: Settings) -> dict[str, str]:
    """The worker's environment: a quarantine budget large enough to store every bad message
    this run sends, so the test can find each one with its reason (production budgets store
    a burst per device and only count the rest)."""
    return {**settings.as_env(), "GRIDSHARE_QUARANTINE_DEVICE_BURST": "1000000"}


def _restart(service: stack.Mosquitto | stack.Postgres) -> None:
    service.down()
    time.sleep(1.0)
    service.up()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    settings = stack_settings_for(tmp_path_factory.mktemp("reliability") / "state")
    settings = settings.model_copy(update={"period_seconds": PERIOD})
    stack.up(settings)
    ingest = ingest_process(settings)
    try:
        db.migrate(settings)
        deploy(settings)
        pools = provision(settings, pools=3, per_pool=4).pools
        ingest.start([GRIDSHARE, "ingest"], env=_ingest_env(settings))
        assert wait_ready(settings.ingest_metrics_port), ingest.log_tail()
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        fleet = Fleet(
            settings,
            load_identities(settings),
            seed=11,
            speed=SIM_SECONDS / WALL_SECONDS,
            interval=300,
            start=midnight - timedelta(days=5),
            faults=FaultPlan.parse("all", 0.02),
            resume=False,
        )
        result = Run(settings, pools, acked={}, sim_end=int(fleet.start + SIM_SECONDS))
        runner = threading.Thread(target=fleet.run, args=(SIM_SECONDS,))
        runner.start()
        try:
            disrupt(settings, fleet, result)
        finally:
            runner.join()
        acked_path = Path(fleet.stats.acked_path)
        for kind in ("reading", "badsig", "reset", *[k for k in EXPECTED_REASON if "garbage" in k]):
            result.acked[kind] = read_acked(acked_path, kinds={kind})
        wait_until_stored(settings, set(result.acked["reading"]), timeout=300)

        crashed = subprocess.run(
            command("broadcast", "oracle", "attest", "--pool", pools[0]),
            cwd=ROOT,
            env={**os.environ, **settings.as_env()},
            capture_output=True,
            text=True,
            timeout=300,
        )
        result.crashed_oracle_exit = crashed.returncode
        ctx = OracleContext.create(settings)
        for pool in pools:
            for _ in range(100):
                outcome = attest_next(ctx, pool)
                result.oracle_outcomes.append(f"{pool} {outcome.epoch} {outcome.status}")
                if outcome.status not in ("confirmed", "pending"):
                    break
            # past the challenge window, so the attested epochs are final and funded
            ctx.client.increase_time(ctx.client.call(ctx.registry.functions.challengePeriod()))
            funding.fund(ctx, pool)
            for index in ("0", "1"):
                funding.claim(ctx, pool, funding.investor(ctx, index))
        yield result
    finally:
        ingest.stop()
        stack.down(settings)


def test_disruptions_happened(run: Run) -> None:
    assert run.disruptions == ["kill -9 ingest", "restart mosquitto", "restart postgres"]
    assert run.crashed_oracle_exit not in (0, None)
    assert not [o for o in run.oracle_outcomes if o.endswith(("withheld", "flagged"))]
    assert len(run.acked["reading"]) > 1000
    assert all(run.acked[k] for k in ("badsig", "reset"))


def test_every_acknowledged_reading_stored_exactly_once(run: Run) -> None:
    stored = stored_keys(run.settings)
    assert len(stored) == len(set(stored)), "duplicate rows"
    assert set(run.acked["reading"]) <= set(stored)
    # A reading can be stored without its PUBACK reaching the device (the broker restarted
    # in between); such extras are fine, but a rejected message must never be among them.
    valid_resets = _valid_resets(run)
    extras = set(stored) - set(run.acked["reading"]) - valid_resets
    rejected = set(run.acked["badsig"]) | set(run.acked["reset"])  # their seq is used up
    assert not extras & (rejected - valid_resets)
    assert len(extras) <= len(stored) // 100


def _valid_resets(run: Run) -> set[tuple[str, int]]:
    """A zeroed reading is a regression only if the meters before it were above zero; a
    device's first reading, or one after readings that were all zero, is a valid reading."""
    with db.connect(run.settings) as conn:
        return {
            (device_id, seq)
            for device_id, seq in run.acked["reset"]
            if not conn.execute(
                "SELECT 1 FROM telemetry WHERE device_id = %s AND seq < %s "
                "AND (energy_wh_total > 0 OR revenue_minor_total > 0 OR sessions_total > 0)",
                (device_id, seq),
            ).fetchone()
        }


def test_every_closed_epoch_attested_exactly_once(run: Run) -> None:
    ctx = OracleContext.create(run.settings)
    events = ctx.registry.events.AttestationAccepted.get_logs(from_block=0)
    per_epoch = Counter((bytes(e.args.poolId), int(e.args.epoch)) for e in events)
    assert per_epoch and max(per_epoch.values()) == 1
    with db.connect(run.settings) as conn:
        for pool in run.pools:
            latest = int(ctx.client.call(ctx.registry.functions.latestEpoch(text_id(pool))))
            confirmed = conn.execute(
                "SELECT epoch FROM oracle_epochs WHERE pool = %s AND state = 'confirmed' "
                "ORDER BY epoch",
                (pool,),
            ).fetchall()
            assert [r[0] for r in confirmed] == list(range(1, latest + 1))
            assert sum(1 for p, _ in per_epoch if p == text_id(pool)) == latest
            # every period that ended before the simulation did is closed (skewed clocks may
            # put a first reading in the day before the simulated start)
            first = conn.execute(
                "SELECT min(t.time) FROM telemetry t JOIN devices d USING (device_id) "
                "WHERE d.pool = %s",
                (pool,),
            ).fetchone()[0]
            epoch1 = int(first.timestamp()) // PERIOD * PERIOD
            assert latest == (run.sim_end - epoch1) // PERIOD, pool


def test_onchain_totals_equal_recomputation(run: Run) -> None:
    ctx = OracleContext.create(run.settings)
    with db.connect(run.settings) as conn:
        for pool in run.pools:
            latest = int(ctx.client.call(ctx.registry.functions.latestEpoch(text_id(pool))))
            onchain = [
                ctx.client.call(ctx.registry.functions.attestation(text_id(pool), e))
                for e in range(1, latest + 1)
            ]
            last_end = datetime.fromtimestamp(onchain[-1][3], UTC)
            energy, revenue = _recompute(
                conn, pool, [datetime.fromtimestamp(a[3], UTC) for a in onchain]
            )
            assert sum(a[4] for a in onchain) == energy, pool
            assert sum(a[5] for a in onchain) == revenue, pool
            assert onchain[0][2] % PERIOD == 0 and last_end.timestamp() % PERIOD == 0


def _recompute(conn: psycopg.Connection, pool: str, ends: list[datetime]) -> tuple[int, int]:
    """Independently of the oracle's SQL: each device's meters at every period end (reading
    on the bound, else linear interpolation, floor; hold the last value after the last
    reading), never below the value used before; total = last used end - first reading."""
    rows = conn.execute(
        "SELECT t.device_id, t.time, t.seq, t.energy_wh_total, t.revenue_minor_total "
        "FROM telemetry t JOIN devices d USING (device_id) WHERE d.pool = %s "
        "ORDER BY t.device_id, t.time, t.seq",
        (pool,),
    ).fetchall()
    readings: dict[str, list[tuple[datetime, int, int]]] = defaultdict(list)
    for device_id, moment, _seq, energy, revenue in rows:
        readings[device_id].append((moment, energy, revenue))
    totals = [0, 0]
    for series in readings.values():
        first = series[0]
        for meter in (0, 1):
            used = first[1 + meter]
            for end in ends:
                value = _at(series, end, meter)
                used = max(used, value if value is not None else used)
            totals[meter] += used - first[1 + meter]
    return totals[0], totals[1]


def _at(series: list[tuple[datetime, int, int]], bound: datetime, meter: int) -> int | None:
    before = [r for r in series if r[0] < bound]
    after = [r for r in series if r[0] >= bound]
    b = before[-1] if before else None
    a = after[0] if after else None
    if a is not None and (a[0] == bound or b is None):
        return a[1 + meter]
    if b is None:
        return None
    v0 = b[1 + meter]
    if a is None or a[1 + meter] < v0:
        return v0
    span = (a[0] - b[0]) // timedelta(microseconds=1)
    part = (bound - b[0]) // timedelta(microseconds=1)
    return v0 + (a[1 + meter] - v0) * part // span


def test_no_holder_can_claim_more_than_their_share(run: Run) -> None:
    ctx = OracleContext.create(run.settings)
    for pool in run.pools:
        token = ctx.client.contract("RevenueShareToken", ctx.record.pools[pool].token)
        funded = int(ctx.client.call(token.functions.totalFunded()))
        supply = int(ctx.client.call(token.functions.totalSupply()))
        assert funded > 0
        paid_out = 0
        for holder in ctx.accounts.investors:
            balance = int(ctx.client.call(token.functions.balanceOf(holder.address)))
            claimable = int(ctx.client.call(token.functions.claimable(holder.address)))
            claimed = int(ctx.client.call(token.functions.claimed(holder.address)))
            assert claimable + claimed <= funded * balance // supply
            paid_out += claimable + claimed
        assert paid_out <= funded


def test_quarantine_holds_every_bad_message_with_its_reason(run: Run) -> None:
    expected: Counter[str] = Counter()
    valid_resets = _valid_resets(run)
    for kind, reason in EXPECTED_REASON.items():
        sent = [k for k in run.acked.get(kind, []) if k not in valid_resets]
        expected[reason] += len(sent)
    with db.connect(run.settings) as conn:
        found = Counter(
            dict(conn.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason").fetchall())
        )
        raw_kept = conn.execute(
            "SELECT count(*) FROM quarantine WHERE length(payload) = 0"
        ).fetchone()[0]
    for reason, count in expected.items():
        assert found[reason] >= count, f"{reason}: {found[reason]} quarantined, {count} sent"
    assert raw_kept == 0
