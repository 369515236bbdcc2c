"""Kill the oracle at each step (as `gridshare oracle attest` subprocesses), restart it:
every epoch ends up attested exactly once, with the recorded transaction."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from gridshare.core.ids import text_id
from gridshare.core.settings import Settings
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from tests.oracle.conftest import Pool, fill, make_pool
from tests.oracle.crashing_oracle import CRASH_EXIT_CODE, ROOT, command

GRIDSHARE = str(Path(sys.executable).parent / "gridshare")


def attest_cli(
    env: dict[str, str], pool: str, crash_after: str = ""
) -> subprocess.CompletedProcess:
    args = ["oracle", "attest", "--pool", pool]
    return subprocess.run(
        command(crash_after, *args) if crash_after else [GRIDSHARE, *args],
        cwd=ROOT,
        env={
            **env,
            "GRIDSHARE_ORACLE_CUTOFF_MARGIN_SECONDS": "0",
            "GRIDSHARE_ORACLE_METRICS_PORT": "0",
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def accepted_events(ctx: OracleContext, pool: str, epoch: int) -> list[dict]:
    return list(
        ctx.registry.events.AttestationAccepted.get_logs(
            from_block=0, argument_filters={"poolId": text_id(pool), "epoch": epoch}
        )
    )


def state(db: psycopg.Connection, pool: str, epoch: int) -> tuple[str, str | None]:
    row = db.execute(
        "SELECT state, tx_hash FROM oracle_epochs WHERE pool = %s AND epoch = %s", (pool, epoch)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def one_day_pool(settings: Settings, db: psycopg.Connection) -> Pool:
    pool = make_pool(settings, db, "pv_plant", devices=2)
    fill(db, pool, 1.05)
    return pool


@pytest.mark.parametrize(
    ("crash_after", "state_left"),
    [("computed", "computed"), ("signed", "signed"), ("broadcast", "submitted")],
)
def test_killed_then_restarted_attests_once(
    stack_settings: Settings,
    stack_env: dict[str, str],
    ctx: OracleContext,
    db: psycopg.Connection,
    crash_after: str,
    state_left: str,
) -> None:
    pool = one_day_pool(stack_settings, db)
    crashed = attest_cli(stack_env, pool.name, crash_after)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    assert state(db, pool.name, 1)[0] == state_left

    restarted = attest_cli(stack_env, pool.name)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "epoch 1 attested" in restarted.stdout
    assert state(db, pool.name, 1)[0] == "confirmed"
    assert ctx.client.call(ctx.registry.functions.latestEpoch(text_id(pool.name))) == 1
    events = accepted_events(ctx, pool.name, 1)
    assert len(events) == 1
    assert "0x" + bytes(events[0]["transactionHash"]).hex() == state(db, pool.name, 1)[1]

    again = attest_cli(stack_env, pool.name)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len(accepted_events(ctx, pool.name, 1)) == 1


def test_transaction_lost_by_the_node_is_rebroadcast_not_rebuilt(
    stack_settings: Settings,
    stack_env: dict[str, str],
    ctx: OracleContext,
    db: psycopg.Connection,
) -> None:
    """Killed after broadcasting into a node that then drops the pending transaction: the
    restart finds nothing by hash, sees the nonce still free and sends the same bytes."""
    pool = one_day_pool(stack_settings, db)
    rpc = ctx.client.w3.provider
    rpc.make_request("evm_setAutomine", [False])
    try:
        crashed = attest_cli(stack_env, pool.name, "broadcast")
        assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
        _, tx_hash = state(db, pool.name, 1)
        assert tx_hash is not None
        assert ctx.client.w3.eth.get_transaction(tx_hash)["blockNumber"] is None  # pending
        rpc.make_request("anvil_dropTransaction", [tx_hash])
    finally:
        rpc.make_request("evm_setAutomine", [True])
    outcome = attest_next(ctx, pool.name)
    assert outcome.status == "confirmed", outcome.message
    assert state(db, pool.name, 1) == ("confirmed", tx_hash)
    assert len(accepted_events(ctx, pool.name, 1)) == 1


def test_pending_transaction_is_waited_for(
    stack_settings: Settings,
    stack_env: dict[str, str],
    ctx: OracleContext,
    db: psycopg.Connection,
) -> None:
    """Killed while its transaction is still in the mempool: the restart finds it by hash and
    waits for it (mined meanwhile), sending nothing new."""
    pool = one_day_pool(stack_settings, db)
    rpc = ctx.client.w3.provider
    rpc.make_request("evm_setAutomine", [False])
    try:
        crashed = attest_cli(stack_env, pool.name, "broadcast")
        assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
        _, tx_hash = state(db, pool.name, 1)
        nonce_before = ctx.client.w3.eth.get_transaction_count(ctx.submitter.address, "pending")
        rpc.make_request("evm_mine", [])
    finally:
        rpc.make_request("evm_setAutomine", [True])
    outcome = attest_next(ctx, pool.name)
    assert outcome.status == "confirmed", outcome.message
    assert state(db, pool.name, 1) == ("confirmed", tx_hash)
    assert ctx.client.w3.eth.get_transaction_count(ctx.submitter.address) == nonce_before
    assert len(accepted_events(ctx, pool.name, 1)) == 1


def test_run_loop_attests_funds_and_stops_on_sigterm(
    stack_settings: Settings,
    stack_env: dict[str, str],
    ctx: OracleContext,
    db: psycopg.Connection,
) -> None:
    pool = make_pool(stack_settings, db, "charging_pile", devices=2)
    fill(db, pool, 2.05)
    loop = subprocess.Popen(
        [GRIDSHARE, "oracle", "run"],
        env={
            **stack_env,
            "GRIDSHARE_ORACLE_AUTO_FUND": "true",
            "GRIDSHARE_ORACLE_POLL_SECONDS": "0.5",
            "GRIDSHARE_ORACLE_CUTOFF_MARGIN_SECONDS": "0",
            "GRIDSHARE_ORACLE_METRICS_PORT": "0",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = db.execute(
                "SELECT count(*) FROM oracle_epochs WHERE pool = %s AND state = 'confirmed'",
                (pool.name,),
            ).fetchone()
            if done and done[0] == 2:
                break
            time.sleep(0.5)
        pid = text_id(pool.name)
        # past the challenge window: the loop funds what became final
        ctx.client.increase_time(ctx.client.call(ctx.registry.functions.challengePeriod()))
        while time.monotonic() < deadline and not ctx.client.call(
            ctx.registry.functions.funded(pid)
        ):
            time.sleep(0.5)
        assert ctx.client.call(ctx.registry.functions.latestEpoch(pid)) == 2
        assert ctx.client.call(ctx.registry.functions.owed(pid)) == 0
        assert ctx.client.call(ctx.registry.functions.funded(pid)) > 0
    finally:
        loop.send_signal(signal.SIGTERM)
        _, stderr = loop.communicate(timeout=60)
    assert loop.returncode == 0, stderr[-2000:]
    assert '"msg": "oracle stopped"' in stderr
