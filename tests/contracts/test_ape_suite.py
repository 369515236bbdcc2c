"""Run the Ape test suite in a copy of the project: ape-solidity compiles the contracts
through the solc adapter, ape-foundry starts Anvil from node_modules/.bin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gridshare.core.chain.compile import CONTRACTS_DIR
from gridshare.core.chain.toolchain import PROJECT_ROOT, install_solc_adapter

BIN = Path(sys.executable).parent
SUITE = Path(__file__).resolve().parent / "ape_suite" / "ape_token_suite.py"


@pytest.mark.slow
def test_ape_suite_on_anvil(tmp_path):
    install_solc_adapter()
    project = tmp_path / "project"
    (project / "contracts").mkdir(parents=True)
    (project / "tests").mkdir()
    for source in CONTRACTS_DIR.glob("*.sol"):
        shutil.copy(source, project / "contracts" / source.name)
    shutil.copy(PROJECT_ROOT / "ape-config.yaml", project / "ape-config.yaml")
    shutil.copy(SUITE, project / "tests" / "test_token_suite.py")
    (project / "node_modules").symlink_to(PROJECT_ROOT / "node_modules")
    env = {**os.environ, "PATH": f"{PROJECT_ROOT / 'node_modules' / '.bin'}:{BIN}:/usr/bin:/bin"}
    done = subprocess.run(
        [str(BIN / "ape"), "test", "tests", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "4 passed" in done.stdout
    manifest = json.loads((project / ".build" / "__local__.json").read_text())
    assert {"AttestationRegistry", "RevenueShareToken", "DeviceRegistry"} <= set(
        manifest["contractTypes"]
    )
