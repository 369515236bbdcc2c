"""The solc adapter as py-solc-x, ape-solidity and slither use it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import solcx

from gridshare.core.chain.compile import CONTRACTS_DIR, compile_contracts, standard_input
from gridshare.core.chain.toolchain import (
    ADAPTER,
    OPENZEPPELIN,
    PROJECT_ROOT,
    install_solc_adapter,
    installed_adapter_path,
)

BIN = Path(sys.executable).parent
OWN = [
    "AttestationRegistry",
    "DeviceRegistry",
    "InvestorRegistry",
    "RevenueShareToken",
    "TestStablecoin",
]


def run(args: list[str], stdin: str | None = None, cwd: Path = PROJECT_ROOT):
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_version_line():
    done = run([str(ADAPTER), "--version"])
    assert done.returncode == 0
    assert re.search(r"Version: (\d+\.\d+\.\d+)\+commit\.\w+", done.stdout).group(1) == "0.8.28"


def test_installed_for_py_solc_x():
    path = install_solc_adapter()
    assert path == installed_adapter_path()
    assert install_solc_adapter() == path  # idempotent
    assert str(solcx.wrapper.get_solc_version(path)) == "0.8.28"
    assert "0.8.28" in [str(v) for v in solcx.get_installed_solc_versions()]


def test_standard_json_output_is_pure_and_whole():
    """Every output selected (ASTs, assembly, ...) far exceeds a pipe buffer: none may be cut."""
    sources = {"TestStablecoin.sol": CONTRACTS_DIR / "TestStablecoin.sol"}
    data = standard_input(sources)
    data["settings"]["outputSelection"] = {"*": {"*": ["*"], "": ["ast"]}}
    done = run(
        [
            str(ADAPTER),
            "--standard-json",
            "--base-path",
            str(CONTRACTS_DIR),
            "--allow-paths",
            str(PROJECT_ROOT / "node_modules"),
        ],
        stdin=json.dumps(data),
    )
    assert done.returncode == 0
    assert len(done.stdout) > 256 * 1024
    output = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert not [e for e in output.get("errors", []) if e["severity"] == "error"]
    contract = output["contracts"]["TestStablecoin.sol"]["TestStablecoin"]
    assert contract["evm"]["deployedBytecode"]["object"]
    assert output["sources"]["TestStablecoin.sol"]["ast"]["nodeType"] == "SourceUnit"


def test_help_lists_combined_json_outputs():
    help_text = run([str(ADAPTER), "--help"]).stdout
    line = next(i for i in help_text.split("\n") if i.startswith("  --combined-json"))
    assert "abi" in line.split(" ")[-1].split(",")


def test_py_solc_x_compile_files_with_remapping(tmp_path):
    """py-solc-x's --combined-json path: file arguments and a prefix=path remapping."""
    output = solcx.compile_files(
        [str(CONTRACTS_DIR / "TestStablecoin.sol")],
        output_values=["abi", "bin", "bin-runtime"],
        import_remappings={"@openzeppelin/": str(OPENZEPPELIN) + "/"},
        allow_paths=[str(PROJECT_ROOT)],
        solc_version="0.8.28",
    )
    key = next(k for k in output if k.endswith(":TestStablecoin"))
    assert output[key]["bin"] and any(i.get("name") == "mint" for i in output[key]["abi"])


def test_py_solc_x_compile_errors_are_reported(tmp_path):
    bad = tmp_path / "Bad.sol"
    bad.write_text("pragma solidity 0.8.28; contract Bad { function f() { } }")
    with pytest.raises(solcx.exceptions.SolcError):
        solcx.compile_files([str(bad)], output_values=["abi"], solc_version="0.8.28")


def test_project_compile_writes_artifacts():
    artifacts = compile_contracts()
    assert set(OWN) <= set(artifacts)
    for name in OWN:
        assert (CONTRACTS_DIR / ".build" / f"{name}.json").exists()


@pytest.mark.slow
def test_slither_finds_no_high_or_medium(tmp_path):
    """Slither through the adapter over all contracts; every High/Medium finding fails."""
    install_solc_adapter()
    target = tmp_path / "All.sol"
    imports = "".join(f'import "{p}";\n' for p in sorted(CONTRACTS_DIR.glob("*.sol")))
    target.write_text(f"// SPDX-License-Identifier: MIT\npragma solidity 0.8.28;\n{imports}")
    report = tmp_path / "slither.json"
    done = run(
        [
            str(BIN / "slither"),
            str(target),
            "--solc",
            str(installed_adapter_path()),
            "--solc-remaps",
            f"@openzeppelin/={OPENZEPPELIN}/",
            f"--solc-args=--allow-paths={PROJECT_ROOT}",
            "--exclude-dependencies",
            "--filter-paths",
            "node_modules",
            "--json",
            str(report),
        ],
        cwd=tmp_path,
    )
    result = json.loads(report.read_text())
    assert result["success"], result.get("error") or done.stderr[-2000:]
    findings = result["results"].get("detectors", [])
    serious = [
        f"{f['impact']} {f['check']}: {f['description'][:200]}"
        for f in findings
        if f["impact"] in ("High", "Medium")
    ]
    assert not serious, "\n".join(serious)
