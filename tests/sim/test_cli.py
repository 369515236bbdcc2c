"""`gridshare sim` wiring: durations, and one-line failures before any device connects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gridshare.core.errors import ConfigError
from gridshare.sim.cli import parse_duration

GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))


def test_durations() -> None:
    assert parse_duration("3600") == parse_duration("3600s") == parse_duration("1h") == 3600
    assert parse_duration("14d") == 14 * 86400 and parse_duration("30m") == 1800
    with pytest.raises(ConfigError):
        parse_duration("a week")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "5"], "gridshare: sim: 0 provisioned device(s), 5 wanted"),
        (["--faults", "meteor"], "gridshare: configuration: --faults unknown fault 'meteor'"),
        (["--duration", "soon"], "gridshare: configuration: --duration 'soon' is not like"),
    ],
)
def test_bad_invocations_fail_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    env = {"GRIDSHARE_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [GRIDSHARE, "sim", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
