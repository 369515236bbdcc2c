"""Pools, attestations and proofs over the real chain: contracts deployed, a pool created
on-chain, readings stored by ingest, epochs attested by the oracle, funded by the operator."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gridshare.core.chain import load_accounts
from gridshare.core.chain.deploy import deploy
from gridshare.core.chain.merkle import verify
from gridshare.core.chain.pools import create_pool
from gridshare.core.settings import Settings
from gridshare.oracle import funding
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.oracle.settings import OracleSettings
from tests.api.data import Fleet, ingest_fleet
from tests.api.test_auth import login

POOL = "charging-pile-7001"
SHARE_BPS = 3_000


@dataclass(frozen=True)
class Attested:
    fleet: Fleet
    epochs: int
    ctx: OracleContext


@pytest.fixture(scope="session")
def attested(
    stack_settings: Settings, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Attested:
    """A chain pool whose ingested readings the oracle attested epoch by epoch, funded once."""
    deploy(stack_settings)
    record = create_pool(stack_settings, POOL, "charging_pile", SHARE_BPS)
    with psycopg.connect(stack_settings.db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pools (name, pool_id, device_type, share_bps, token_address)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (POOL, record.pool_id, "charging_pile", SHARE_BPS, record.token),
        )
    fleet = ingest_fleet(
        stack_settings, stack_env, tmp_path_factory.mktemp("pool-ingest"), pool=POOL
    )
    ctx = OracleContext.create(
        stack_settings,
        OracleSettings(metrics_port=0, receipt_timeout_seconds=30, cutoff_margin_seconds=0),
    )
    epochs = 0
    for _ in range(5):
        outcome = attest_next(ctx, POOL, force=True)
        if outcome.status != "confirmed":
            break
        epochs += 1
    assert epochs >= 2, outcome.message
    funding.fund(ctx, POOL)
    return Attested(fleet, epochs, ctx)


def test_pool_shows_token_supply_devices_and_revenue(
    client: TestClient, attested: Attested
) -> None:
    body = client.get(f"/v1/pools/{POOL}").json()
    assert body["name"] == POOL
    assert body["device_type"] == "charging_pile"
    assert body["share_bps"] == SHARE_BPS
    assert body["token_address"].startswith("0x") and body["token_symbol"]
    assert int(body["token_supply"]) > 0 and isinstance(body["token_supply"], str)
    assert body["devices"] == len(attested.fleet.devices)
    assert body["latest_epoch"] == attested.epochs
    revenue = body["revenue"]
    with psycopg.connect(attested.ctx.settings.db_url) as conn:
        gross, investors = conn.execute(
            "SELECT sum(revenue_minor), sum(investor_amount) FROM oracle_epochs"
            " WHERE pool = %s AND state = 'confirmed'",
            (POOL,),
        ).fetchone()
    assert revenue["attested_minor"] == int(gross) > 0
    assert revenue["investor_attested"] == str(int(investors))
    assert revenue["funded"] == revenue["investor_attested"]  # funded once, in full
    assert revenue["owed"] == "0"
    assert revenue["distributed"] == revenue["funded"]
    listed = client.get("/v1/pools").json()["items"]
    assert POOL in [p["name"] for p in listed]
    assert client.get("/v1/pools/no-such-pool").status_code == 404


def test_attestations_list_periods_figures_root_signers_tx(
    client: TestClient, attested: Attested
) -> None:
    page = client.get(f"/v1/pools/{POOL}/attestations", params={"limit": 1}).json()
    first = page["items"][0]
    assert first["epoch"] == attested.epochs
    assert page["next_cursor"]
    rest = client.get(
        f"/v1/pools/{POOL}/attestations", params={"cursor": page["next_cursor"]}
    ).json()
    epochs = [first["epoch"]] + [a["epoch"] for a in rest["items"]]
    assert epochs == list(range(attested.epochs, 0, -1))
    assert first["state"] == "confirmed"
    assert first["tx_hash"].startswith("0x") and len(first["merkle_root"]) == 66
    assert len(first["signers"]) >= 3
    assert first["device_count"] == len(attested.fleet.devices)
    assert isinstance(first["investor_amount"], str)


def test_income_buckets_add_up_to_each_attested_device_figure(
    client: TestClient, attested: Attested
) -> None:
    with psycopg.connect(attested.ctx.settings.db_url) as conn:
        leaves = conn.execute(
            "SELECT e.epoch, e.period_start, e.period_end, l.device_id, l.revenue_minor,"
            " l.energy_wh FROM oracle_leaves l JOIN oracle_epochs e USING (pool, epoch)"
            " WHERE l.pool = %s ORDER BY 1, 4",
            (POOL,),
        ).fetchall()
    assert len(leaves) == attested.epochs * len(attested.fleet.devices)
    for epoch, start, end, device_id, revenue, energy in leaves:
        for bucket in ("1h", "15m", "1d"):
            params = {"start": start.isoformat(), "end": end.isoformat(), "bucket": bucket}
            income = client.get(f"/v1/devices/{device_id}/income", params=params).json()
            assert income["total_minor"] == int(revenue), (epoch, device_id, bucket)
            assert sum(p["revenue_minor"] for p in income["points"]) == int(revenue)
        tele = client.get(
            f"/v1/devices/{device_id}/telemetry",
            params={"start": start.isoformat(), "end": end.isoformat(), "bucket": "1h"},
        ).json()
        assert sum(p["energy_wh"] for p in tele["points"]) == int(energy), (epoch, device_id)


def test_proof_verifies_against_the_onchain_root(client: TestClient, attested: Attested) -> None:
    device = attested.fleet.devices[1].device_id
    url = f"/v1/pools/{POOL}/attestations/2/proof/{device}"
    proof = client.get(url).json()
    assert proof["fields"]["names"][0] == "poolId"
    assert len(proof["fields"]["values"]) == len(proof["fields"]["types"])
    leaf = bytes.fromhex(proof["leaf"][2:])
    nodes = [bytes.fromhex(p[2:]) for p in proof["proof"]]
    assert verify(nodes, bytes.fromhex(proof["merkle_root"][2:]), leaf)
    check = client.get(f"{url}/verify").json()
    assert check["valid"] is True
    assert check["onchain_root"] == proof["merkle_root"]
    # a wrong epoch / unknown device are 404s, not errors
    assert client.get(f"/v1/pools/{POOL}/attestations/99/proof/{device}").status_code == 404
    assert client.get(f"/v1/pools/{POOL}/attestations/2/proof/cp-none").status_code == 404


def test_portfolio_of_a_signed_in_investor(
    client: TestClient, attested: Attested, stack_settings: Settings
) -> None:
    investor = load_accounts(stack_settings).investors[0]
    account = Account.from_key(investor.private_key)
    token = login(client, account)
    res = client.get(
        f"/v1/investors/{account.address}/portfolio",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert res.status_code == 200, res.text
    holding = next(h for h in res.json()["holdings"] if h["pool"] == POOL)
    assert int(holding["balance"]) > 0
    assert 0 < holding["share_bps"] <= 10_000
    assert int(holding["claimable"]) > 0  # funded above, not yet claimed
    assert holding["claimed"] == "0"
