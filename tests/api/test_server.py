"""The API as a real process: OpenAPI contract (schemathesis), health, metrics, live stream."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
from fastapi.testclient import TestClient

from gridshare.api.main import create_app
from gridshare.core.payloads import format_ts
from gridshare.core.settings import Settings
from tests.api.data import LAST, Fleet
from tests.ingest.fleet import IngestProcess, Publisher, wait_until
from tests.support import admin_url

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_openapi_documents_every_spec_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, method in [
        ("/health", "get"),
        ("/v1/devices", "get"),
        ("/v1/devices/{device_id}", "get"),
        ("/v1/devices/{device_id}/telemetry", "get"),
        ("/v1/devices/{device_id}/income", "get"),
        ("/v1/pools", "get"),
        ("/v1/pools/{pool}", "get"),
        ("/v1/pools/{pool}/attestations", "get"),
        ("/v1/pools/{pool}/attestations/{epoch}/proof/{device_id}", "get"),
        ("/v1/auth/nonce", "post"),
        ("/v1/auth/login", "post"),
        ("/v1/investors/{address}/portfolio", "get"),
        ("/v1/stream", "get"),
        ("/metrics", "get"),
        ("/", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing"
    params = {p["name"] for p in paths["/v1/devices"]["get"]["parameters"]}
    assert {"pool", "type", "status", "limit", "cursor"} <= params
    device = schema["components"]["schemas"]["Device"]["properties"]
    for field in (
        "type",
        "pool",
        "online",
        "status",
        "last_seen",
        "last_seq",
        "readings",
        "power_w",
        "soc_pct",
        "energy_wh_total",
        "revenue_minor_total",
    ):
        assert field in device
    assert "422" not in json.dumps(schema["paths"])  # validation errors are documented 400s


def test_schemathesis_finds_no_server_error_or_schema_mismatch(
    server: str, api_settings: Settings, tmp_path: Path
) -> None:
    """Bounded run: few examples per operation, a fixed seed; /v1/stream never ends."""
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{server}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,"
            "content_type_conformance,status_code_conformance",
            "--exclude-path",
            "/v1/stream",
            "--max-examples",
            "8",
            "--seed",
            "7",
            "--request-timeout",
            "20",
            "-H",
            f"X-API-Key: {api_settings.api_key}",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "schemathesis.txt").write_text(result.stdout + result.stderr)
    failures = result.stdout.split("FAILURES")[-1] if "FAILURES" in result.stdout else ""
    assert result.returncode == 0, (failures or result.stdout)[:8000] + result.stderr[-2000:]


def test_health_reports_each_dependency(server: str) -> None:
    body = httpx.get(f"{server}/health").json()
    assert body["status"] == "ok", body
    for dep in ("db", "broker", "chain"):
        assert body[dep]["ok"] is True and body[dep]["detail"]


def test_metrics_count_requests_by_route_template(server: str, fleet: Fleet) -> None:
    for device in fleet.devices:
        httpx.get(f"{server}/v1/devices/{device.device_id}")
    httpx.get(f"{server}/v1/devices/cp-nope")
    text = httpx.get(f"{server}/metrics").text
    assert (
        'gridshare_api_requests_total{method="GET",route="/v1/devices/{device_id}",status="200"}'
        in text
    )
    assert 'route="/v1/devices/{device_id}",status="404"' in text
    assert (
        'gridshare_api_request_seconds_bucket{le="0.005",method="GET",route="/v1/devices/{device_id}"}'
        in text
    )
    assert "cp-nope" not in text  # raw paths never become labels


def test_errors_never_leak_a_stack_trace(server: str) -> None:
    res = httpx.get(f"{server}/v1/nothing-here")
    assert res.status_code == 404
    assert res.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    res = httpx.post(f"{server}/v1/devices")
    assert res.status_code == 405
    assert res.json()["error"]["code"] == "method_not_allowed"


def test_stream_fans_out_ingested_updates_from_one_listener(
    server: str,
    fleet: Fleet,
    stack_settings: Settings,
    stack_env: dict[str, str],
    tmp_path: Path,
) -> None:
    device = fleet.devices[0]
    next_seq = fleet.readings[device.device_id][-1].seq + 1
    received: list[list[dict]] = [[], [], []]
    ready = [threading.Event() for _ in received]

    def listen(i: int) -> None:
        with httpx.stream("GET", f"{server}/v1/stream", timeout=30) as res:
            assert res.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in res.iter_lines():
                if line.startswith(": connected"):
                    ready[i].set()
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "device":
                    update = json.loads(line[6:])
                    received[i].append(update)
                    if update["device_id"] == device.device_id and update["last_seq"] == next_seq:
                        return

    def listeners() -> int:  # as a superuser: the API's sessions are its own role's
        with psycopg.connect(admin_url(stack_settings), autocommit=True) as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN gridshare_device'"
            ).fetchone()[0]

    before = wait_until(listeners, 10, "the API's listener")  # it listens from start-up
    threads = [threading.Thread(target=listen, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for e in ready:
        assert e.wait(10)
    assert listeners() == before  # no connection per client: one listener fans out

    worker = IngestProcess(stack_env, tmp_path, "api-stream").start()
    publisher = Publisher(stack_settings)
    try:
        last = fleet.readings[device.device_id][-1]
        publisher.publish(
            device.topic,
            device.reading(
                next_seq,
                ts=format_ts(LAST + timedelta(minutes=1)),
                energy_wh_total=last.energy_wh + 10,
                revenue_minor_total=last.revenue_minor + 5,
            ),
        )
        publisher.flush()
        for t in threads:
            t.join(30)
    finally:
        publisher.close()
        worker.stop()
    for updates in received:
        mine = [u for u in updates if u["device_id"] == device.device_id]
        assert mine and mine[-1]["last_seq"] == next_seq
        assert mine[-1]["revenue_minor_total"] == last.revenue_minor + 5


def test_unexpected_errors_are_500_without_a_trace(api_settings: Settings) -> None:
    app = create_app(api_settings)

    async def boom() -> None:
        raise RuntimeError("secret internals at /srv/app.py line 42")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        res = client.get("/boom")
    assert res.status_code == 500
    assert res.json() == {
        "error": {"code": "internal", "message": "internal error; see the API log"}
    }
    assert "secret" not in res.text and "Traceback" not in res.text
