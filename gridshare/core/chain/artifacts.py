"""Compiled contract artifacts (ABI and bytecode) as written to `contracts/.build/`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridshare.core.chain.toolchain import PROJECT_ROOT
from gridshare.core.errors import GridshareError

BUILD_DIR = PROJECT_ROOT / "contracts" / ".build"


@dataclass(frozen=True)
class Artifact:
    """One contract's ABI and creation bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str

    def to_json(self) -> dict[str, Any]:
        return {
            "contractName": self.name,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "deployedBytecode": self.deployed_bytecode,
        }


_checked: set[Path] = set()


def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> Artifact:
    """The artifact of contract `name`.

    The project build is brought up to date once per process where the compiler is installed;
    elsewhere (a runtime image without node) the artifacts on disk are used as they are.
    """
    from gridshare.core.chain.compile import CONTRACTS_DIR, compile_contracts
    from gridshare.core.chain.toolchain import toolchain_available

    if build_dir == BUILD_DIR and build_dir not in _checked:
        if toolchain_available():
            compile_contracts(CONTRACTS_DIR, BUILD_DIR)
        _checked.add(build_dir)
    path = build_dir / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise GridshareError(
            f"contract artifact {path} missing; run `make setup` or `gridshare deploy`"
        ) from exc
    return Artifact(name, data["abi"], data["bytecode"], data["deployedBytecode"])


def error_abis(build_dir: Path = BUILD_DIR) -> list[dict[str, Any]]:
    """Every custom error declared in any compiled contract (for decoding reverts)."""
    errors: dict[str, dict[str, Any]] = {}
    for path in sorted(build_dir.glob("*.json")):
        if path.name.startswith("."):
            continue
        for item in json.loads(path.read_text()).get("abi", []):
            if item.get("type") == "error":
                signature = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
                errors[signature] = item
    return list(errors.values())
