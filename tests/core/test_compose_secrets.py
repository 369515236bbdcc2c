"""docker-compose.yml keeps secrets where they belong: the API container mounts only the
deployment record (read-only) and its own secrets, no mnemonic on a command line, devices
on the TLS listener that broker-config writes."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.core.test_compose import SERVICES, settings_of


def test_api_mounts_only_the_deployment_record_and_its_secrets() -> None:
    volumes = SERVICES["api"]["volumes"]
    assert sorted(volumes) == ["api-secrets:/state/api", "deployments:/state/deployments:ro"]


def test_no_mnemonic_on_a_command_line() -> None:
    for name, service in SERVICES.items():
        command = " ".join(str(part) for part in service.get("command") or [])
        assert "mnemonic" not in command and "test test" not in command, name
    assert "--quiet" in SERVICES["anvil"]["command"]


def test_devices_reach_the_tls_listener_broker_config_writes() -> None:
    command = SERVICES["broker-config"]["command"]
    device_listen = command[command.index("--device-listen") + 1]
    for name in ("sim", "init", "api"):
        url = urlsplit(settings_of(SERVICES[name]).mqtt_device_url)
        assert url.scheme == "mqtts" and (url.hostname, str(url.port)) == (
            "mosquitto",
            device_listen.split(":")[1],
        ), name
    assert any(p.endswith(":8883") for p in SERVICES["mosquitto"]["ports"])


def test_published_ingest_metrics_listen_beyond_the_container_loopback() -> None:
    for name in ("ingest-1", "ingest-2"):
        assert settings_of(SERVICES[name]).ingest_metrics_host == "0.0.0.0", name
