"""Signers as their own processes (`gridshare oracle signer`), each with its own key file:
the aggregator asks them over HTTP, they recompute and check the epoch themselves, and a
signer that is down is simply not counted."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from gridshare.core.settings import Settings
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.oracle.remote import RemoteSigner
from tests.api.conftest import GRIDSHARE
from tests.oracle.conftest import T0, fill, insert_readings, make_pool, oracle_settings
from tests.support import free_port


@pytest.fixture
def signer_processes(
    ctx: OracleContext, stack_env: dict[str, str], tmp_path: Path
) -> Iterator[dict[int, str]]:
    """Oracle keys 0 and 1 each served by its own process; {index: url}."""
    procs, urls = [], {}
    for i in (0, 1):
        key_file = tmp_path / f"oracle-{i}.json"
        key_file.write_text(json.dumps(ctx.accounts.oracles[i].to_json()))
        key_file.chmod(0o600)
        port = free_port()
        log = open(tmp_path / f"signer-{i}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(
            (
                subprocess.Popen(
                    [
                        GRIDSHARE,
                        "oracle",
                        "signer",
                        "--key-file",
                        str(key_file),
                        "--port",
                        str(port),
                    ],
                    env=stack_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
        urls[i] = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    for url in urls.values():
        while True:
            try:
                httpx.post(f"{url}/v1/nothing", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (tmp_path / "signer-0.log").read_text()
                time.sleep(0.2)
    yield urls
    for proc, log in procs:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_signers_in_their_own_processes_sign_what_they_computed(
    stack_settings: Settings,
    ctx: OracleContext,
    db: psycopg.Connection,
    signer_processes: dict[int, str],
) -> None:
    ctx = dataclasses.replace(
        ctx, settings=oracle_settings(ctx.settings, oracle_signer_urls=signer_processes)
    )
    assert isinstance(ctx.signers[0], RemoteSigner) and isinstance(ctx.signers[1], RemoteSigner)
    pool = make_pool(stack_settings, db, "pv_plant", devices=2)
    fill(db, pool, 1.05)
    outcome = attest_next(ctx, pool.name)
    assert outcome.status == "confirmed", outcome.message
    answers = dict(
        db.execute(
            "SELECT signer, detail FROM oracle_signatures WHERE pool = %s AND epoch = 1 AND agrees",
            (pool.name,),
        ).fetchall()
    )
    assert answers.get(ctx.accounts.oracles[0].address) == "signed"
    assert answers.get(ctx.accounts.oracles[1].address) == "signed"

    # a signer that is down is not counted; the others still make the threshold
    down = {**signer_processes, 1: f"http://127.0.0.1:{free_port()}"}
    ctx = dataclasses.replace(ctx, settings=oracle_settings(ctx.settings, oracle_signer_urls=down))
    for i, device in enumerate(pool.devices):
        insert_readings(
            db, device, T0 + timedelta(days=1.05), T0 + timedelta(days=2.05), offset=i * 7
        )
    outcome = attest_next(ctx, pool.name)
    assert outcome.status == "confirmed", outcome.message
    (detail,) = db.execute(
        "SELECT detail FROM oracle_signatures WHERE pool = %s AND epoch = 2 AND signer = %s",
        (pool.name, ctx.accounts.oracles[1].address),
    ).fetchone()
    assert detail.startswith("failed")
