"""Pools, attestations and proofs over the real chain: contracts deployed, a pool created
on-chain, readings stored by ingest, epochs attested by the oracle, funded by the operator."""

from __future__ import annotations

import psycopg
from eth_account import Account
from fastapi.testclient import TestClient

from gridshare.api.main import create_app
from gridshare.core.chain import load_accounts
from gridshare.core.chain.merkle import verify
from gridshare.core.chain.servicing import Servicing
from gridshare.core.settings import Settings
from gridshare.core.signing import address_for_key, recover
from tests.api.conftest import POOL, SHARE_BPS, Attested
from tests.api.test_auth import login


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
    assert revenue["pending"] == "0"  # the fixture moved the clock past the window
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
    # past the challenge window (the fixture moved the chain's clock): final, no time left
    assert first["settlement"] == "final" and first["seconds_left"] is None
    assert first["challenge_ends"]


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
    assert check["signatures"] >= 2 and check["signatures_verified"] == check["signatures"]
    assert check["signature_problems"] == [] and check["excluded"] is None
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
    assert holding["status"] == "active"


def test_evidence_holds_the_signed_readings_keys_and_previous_leaf(
    client: TestClient, attested: Attested
) -> None:
    device = attested.fleet.devices[0]
    epoch = attested.epochs
    body = client.get(f"/v1/pools/{POOL}/attestations/{epoch}/evidence/{device.device_id}")
    assert body.status_code == 200, body.text
    evidence = body.json()
    assert evidence["exclusion"] is None and evidence["state"] == "confirmed"
    address = address_for_key(device.key)
    assert [k["address"] for k in evidence["keys"]] == [address]
    readings = evidence["readings"]
    assert readings and {"before_end", "from_start"} <= {r for x in readings for r in x["roles"]}
    for reading in readings:
        assert recover(reading["payload"].encode(), reading["sig"]) == address
        assert reading["received_at"] <= evidence["data_cutoff"]
    leaf = evidence["leaf"]
    assert verify(
        [bytes.fromhex(p[2:]) for p in leaf["proof"]],
        bytes.fromhex(leaf["merkle_root"][2:]),
        bytes.fromhex(leaf["leaf"][2:]),
    )
    previous = evidence["previous"]
    assert previous["epoch"] == epoch - 1
    names = leaf["fields"]["names"]
    end_energy = previous["fields"]["values"][names.index("endEnergyWh")]
    energy = leaf["fields"]["values"][names.index("energyWh")]
    now_end = leaf["fields"]["values"][names.index("endEnergyWh")]
    assert int(now_end) - int(energy) == int(end_energy)  # starts where the last one ended

    page = client.get(f"/v1/pools/{POOL}/attestations/{epoch}/evidence", params={"limit": 2})
    assert page.status_code == 200, page.text
    first = page.json()
    items = first["items"]
    while first["next_cursor"]:
        first = client.get(
            f"/v1/pools/{POOL}/attestations/{epoch}/evidence",
            params={"limit": 2, "cursor": first["next_cursor"]},
        ).json()
        items += first["items"]
    assert sorted(i["device_id"] for i in items) == sorted(
        d.device_id for d in attested.fleet.devices
    )
    mine = next(i for i in items if i["device_id"] == device.device_id)
    assert mine["leaf"] == leaf["leaf"] and mine["readings"] == readings
    missing = client.get(f"/v1/pools/{POOL}/attestations/{epoch}/evidence/cp-nobody")
    assert missing.status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/pools/{pool}/attestations/{epoch}/evidence/{device_id}" in paths


def test_portfolio_shows_a_frozen_holder(
    api_settings: Settings, attested: Attested, stack_settings: Settings
) -> None:
    investor = load_accounts(stack_settings).investors[2]
    servicing = Servicing(stack_settings, attested.ctx.client)
    servicing.freeze(investor.address, frozen=True)
    try:
        with TestClient(create_app(api_settings)) as fresh:
            account = Account.from_key(investor.private_key)
            res = fresh.get(
                f"/v1/investors/{account.address}/portfolio",
                headers={"Authorization": f"Bearer {login(fresh, account)}"},
            )
        holding = next(h for h in res.json()["holdings"] if h["pool"] == POOL)
        assert holding["status"] == "frozen"
        assert int(holding["claimable"]) > 0  # still entitled, claimable once unfrozen
    finally:
        servicing.freeze(investor.address, frozen=False)
