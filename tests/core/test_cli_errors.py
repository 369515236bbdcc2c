"""Misconfiguration and unreachable services end in one line naming what to fix, exit 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port

GRIDSHARE = str(Path(sys.executable).parent / "gridshare")


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
    clean["GRIDSHARE_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [GRIDSHARE, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unreachable_database(tmp_path: Path) -> None:
    url = f"postgresql://gridshare@127.0.0.1:{free_port()}/gridshare"
    result = run(["migrate"], tmp_path, GRIDSHARE_DB_URL=url)
    assert_one_line(result, "database unreachable", "GRIDSHARE_DB_URL")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GRIDSHARE_API_PORT", "not-a-port"),
        ("GRIDSHARE_PERIOD_SECONDS", "-5"),
        ("GRIDSHARE_ORACLE_POLL_SECONDS", "0"),
        ("GRIDSHARE_ORACLE_SIGNER_URLS", "not json"),
    ],
)
def test_malformed_setting(tmp_path: Path, variable: str, value: str) -> None:
    assert_one_line(run(["migrate"], tmp_path, **{variable: value}), variable)


def test_stack_port_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        url = f"postgresql://gridshare@127.0.0.1:{port}/gridshare"
        result = run(["stack", "up"], tmp_path, GRIDSHARE_DB_URL=url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "GRIDSHARE_DB_URL" in result.stderr.strip().splitlines()[-1]
