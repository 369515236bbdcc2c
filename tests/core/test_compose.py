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
from gridshare.core.settings import SERVICE_ROLES, Service, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
GRIDSHARE_SERVICES = {n: s for n, s in SERVICES.items() if s.get("image") == "gridshare:local"}
LONG_RUNNING = {"timescaledb", "anvil", "mosquitto", "ingest-1", "ingest-2", "oracle", "api"}
DB_URLS = (
    "GRIDSHARE_DB_URL",
    "GRIDSHARE_INGEST_DB_URL",
    "GRIDSHARE_ORACLE_DB_URL",
    "GRIDSHARE_API_DB_URL",
    "GRIDSHARE_ORACLE_SIGNER_DB_URL",
    "GRIDSHARE_BRIDGE_DB_URL",
)
# The role each service connects as, per the settings it reads (docs/database.md, "Roles").
SERVICE_ROLES_IN_COMPOSE: dict[str, dict[Service, str]] = {
    "ingest-1": {"ingest": "gridshare_ingest"},
    "ingest-2": {"ingest": "gridshare_ingest"},
    **{f"ingest-scale-{i}": {"ingest": "gridshare_ingest"} for i in range(1, 5)},
    "oracle": {"oracle": "gridshare_oracle", "oracle_signer": "gridshare_reader"},
    "api": {"api": "gridshare_reader"},
}


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
        for variable in DB_URLS:
            if variable not in env_of(service):
                continue
            db = urlsplit(getattr(settings, variable.removeprefix("GRIDSHARE_").lower()))
            assert (db.hostname, db.port) == ("timescaledb", 5432), (name, variable)
            assert db.path.lstrip("/") == resolve(tsdb_env["POSTGRES_DB"])
        if "GRIDSHARE_DB_URL" in env_of(service):
            owner = urlsplit(settings.db_url)
            assert owner.username == resolve(tsdb_env["POSTGRES_USER"])
            assert owner.password == resolve(tsdb_env["POSTGRES_PASSWORD"])
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


@pytest.mark.parametrize("name", sorted(SERVICE_ROLES_IN_COMPOSE))
def test_each_service_connects_as_its_own_role(name: str) -> None:
    """Services hold their own role's URL only, never the owner's (nor its password)."""
    env = env_of(SERVICES[name])
    settings = settings_of(SERVICES[name])
    assert "GRIDSHARE_DB_URL" not in env, name
    assert "GRIDSHARE_DB_PASSWORD" not in " ".join(env.values()), name
    for service, role in SERVICE_ROLES_IN_COMPOSE[name].items():
        url = urlsplit(settings.service_db_url(service))
        assert (url.username, url.hostname) == (role, "timescaledb"), (name, service)
        assert url.password, (name, service)
        assert SERVICE_ROLES[service] == role


def test_init_creates_every_role_before_migrating() -> None:
    """init holds every service URL, so `migrate --create-roles` gives each role its
    password before the grants run; the roles' passwords are their own variables."""
    init = SERVICES["init"]
    assert "gridshare migrate --create-roles &&" in " ".join(init["command"])
    settings = settings_of(init)
    roles = {
        urlsplit(settings.service_db_url(service)).username: urlsplit(
            settings.service_db_url(service)
        ).password
        for service in SERVICE_ROLES
    }
    assert set(roles) == set(SERVICE_ROLES.values())
    assert len(set(roles.values())) == len(roles)
    for service in SERVICE_ROLES:
        assert f"GRIDSHARE_{service.upper()}_DB_URL" in env_of(init)
