"""The one settings object: the oracle's variables keep their names, and `as_env` hands a
child process every oracle field."""

from __future__ import annotations

import pytest

from gridshare.core.errors import ConfigError
from gridshare.core.settings import Settings, get_settings


def test_oracle_variables_keep_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHARE_ORACLE_POLL_SECONDS", "0.5")
    monkeypatch.setenv("GRIDSHARE_ORACLE_SIGNER_URLS", '{"2": "http://127.0.0.1:9201"}')
    settings = Settings()
    assert settings.oracle_poll_seconds == 0.5
    assert settings.oracle_signer_urls == {2: "http://127.0.0.1:9201"}


def test_as_env_round_trips_the_oracle_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    given = Settings(
        oracle_auto_fund=True,
        oracle_signer_db_urls={0: "postgresql://signer@127.0.0.1:5/x"},
        oracle_guard_max_ratio=2.5,
        oracle_metrics_port=0,
    )
    oracle_fields = {n for n in Settings.model_fields if n.startswith("oracle_")}
    assert {f"GRIDSHARE_{n.upper()}" for n in oracle_fields} <= set(given.as_env())
    for name, value in given.as_env().items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert {n: getattr(child, n) for n in oracle_fields} == {
        n: getattr(given, n) for n in oracle_fields
    }


def test_get_settings_names_the_malformed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHARE_ORACLE_SIGN_ATTEMPTS", "0")
    with pytest.raises(ConfigError, match="GRIDSHARE_ORACLE_SIGN_ATTEMPTS: Input should be"):
        get_settings.__wrapped__()


def test_no_setting_crashes_the_process() -> None:
    """Crash injection is installed by tests only (tests/oracle/crashing_oracle.py)."""
    assert not [name for name in Settings.model_fields if "crash" in name]
