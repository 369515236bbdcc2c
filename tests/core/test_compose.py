"""docker-compose.yml cannot run here (no Docker engine), so check everything checkable:
services, dependencies, health checks, ports and variables against the settings and CLI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from gridshare.cli import app
from gridshare.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
GRIDSHARE_SERVICES = {n: s for n, s in SERVICES.items() if s.get("image") == "gridshare:local"}
LONG_RUNNING = {"timescaledb", "anvil", "mosquitto", "ingest-1", "ingest-2", "oracle", "api"}


def env_of(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def resolve(value: str) -> str:
    """Apply compose's ${VAR:-default} with defaults (no .env here)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def settings_of(service: dict) -> Settings:
    """The Settings a service's container would build from its environment."""
    values = {k.removeprefix("GRIDSHARE_").lower(): resolve(v) for k, v in env_of(service).items()}
    return Settings(**values)


def test_expected_services() -> None:
    assert set(SERVICES) >= {"timescaledb", "mosquitto", "anvil", "ingest-1", "ingest-2"}
    assert set(SERVICES) >= {"oracle", "api", "sim", "init"}
    assert "timescale/timescaledb" in SERVICES["timescaledb"]["image"]
    assert "pg16" in SERVICES["timescaledb"]["image"]
    assert SERVICES["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert "foundry" in SERVICES["anvil"]["image"]


def test_one_dockerfile_for_all_gridshare_services() -> None:
    assert (ROOT / "Dockerfile").exists()
    assert {s["build"] for s in GRIDSHARE_SERVICES.values()} == {"."}
    dockerfile = (ROOT / "Dockerfile").read_text()
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for folder in {*package_dir.values(), "contracts", "scripts"}:
        assert f"COPY {folder} {folder}\n" in dockerfile, f"the image lacks {folder}/"


def test_dependencies_exist_with_conditions() -> None:
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            assert rule["condition"] in {
                "service_healthy",
                "service_completed_successfully",
                "service_started",
            }
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"


def test_long_running_services_have_health_checks() -> None:
    for name in LONG_RUNNING:
        assert SERVICES[name].get("healthcheck", {}).get("test"), name


def test_environment_names_are_settings() -> None:
    known = {f"GRIDSHARE_{field.upper()}" for field in Settings.model_fields}
    for name, service in GRIDSHARE_SERVICES.items():
        for variable in env_of(service):
            assert variable in known, f"{name}: {variable} is not a setting"


def test_urls_point_at_the_right_services() -> None:
    tsdb_env = env_of(SERVICES["timescaledb"])
    anvil_port = next(
        a.split("=")[1] for a in SERVICES["anvil"]["command"] if a.startswith("--port=")
    )
    broker_listen = SERVICES["broker-config"]["command"][-1]
    for name, service in GRIDSHARE_SERVICES.items():
        settings = settings_of(service)
        db = urlsplit(settings.db_url)
        assert (db.hostname, db.port) == ("timescaledb", 5432), name
        assert db.username == resolve(tsdb_env["POSTGRES_USER"])
        assert db.path.lstrip("/") == resolve(tsdb_env["POSTGRES_DB"])
        assert (settings.mqtt_host, str(settings.mqtt_port)) == (
            "mosquitto",
            broker_listen.split(":")[1],
        )
        rpc = urlsplit(settings.rpc_url)
        assert (rpc.hostname, str(rpc.port)) == ("anvil", anvil_port)


def test_published_ports_match_settings() -> None:
    api = settings_of(SERVICES["api"])
    assert any(p.endswith(f":{api.api_port}") for p in SERVICES["api"]["ports"])
    assert api.api_host == "0.0.0.0"
    for name in ("ingest-1", "ingest-2"):
        port = env_of(SERVICES[name])["GRIDSHARE_INGEST_METRICS_PORT"]
        assert any(p.endswith(f":{port}") for p in SERVICES[name]["ports"])
        assert port in " ".join(SERVICES[name]["healthcheck"]["test"])


@pytest.mark.parametrize("name", sorted(GRIDSHARE_SERVICES))
def test_commands_exist(name: str) -> None:
    """Each service's command is a real `gridshare` command with real options."""
    command = GRIDSHARE_SERVICES[name]["command"]
    if GRIDSHARE_SERVICES[name].get("entrypoint"):
        lines = [c.strip() for c in " ".join(command).split("&&")]
        commands = [line.split()[1:] for line in lines if line.startswith("gridshare")]
    else:
        commands = [command]
    for args in commands:
        first_option = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
        words = args[:first_option]
        result = CliRunner().invoke(app, [*words, "--help"])
        assert result.exit_code == 0, f"{name}: gridshare {' '.join(words)}: {result.output}"
        for option in (a for a in args if a.startswith("--")):
            assert option in result.output, f"{name}: {option} not an option of {words}"


def test_scale_profile_clusters_brokers_and_workers() -> None:
    """`--profile scale`: three broker nodes that find each other, workers and devices that
    reach every node, nothing of it started without the profile."""
    scale = {n for n, s in SERVICES.items() if "scale" in (s.get("profiles") or [])}
    brokers = sorted(n for n in scale if n.startswith("broker-"))
    workers = sorted(n for n in scale if n.startswith("ingest-scale-"))
    assert brokers == ["broker-1", "broker-2", "broker-3"] and len(workers) >= 3
    for name in brokers:
        broker = SERVICES[name]
        assert broker["image"].startswith("rabbitmq:3.")
        assert (
            env_of(broker)["RABBITMQ_NODENAME"]
            == f"rabbit@{broker['hostname']}"
            == f"rabbit@{name}"
        )
        assert broker["healthcheck"]["test"]
    config = CliRunner().invoke(app, ["stack", "cluster-config", "--help"])
    assert config.exit_code == 0 and "--nodes" in config.output
    for name in [*workers, "sim-scale", "init-scale"]:
        settings = settings_of(SERVICES[name])
        hosts = [urlsplit(u).hostname for u in settings.cluster_mqtt_urls.split(",")]
        assert hosts == brokers, name
    for name in workers:
        assert set(SERVICES[name]["depends_on"]) == set(brokers)
        port = env_of(SERVICES[name])["GRIDSHARE_INGEST_METRICS_PORT"]
        assert port in " ".join(SERVICES[name]["healthcheck"]["test"])
