"""Compile the Solidity sources with py-solc-x through the adapter; write one JSON per contract.

Artifacts are rebuilt only when a source (or the OpenZeppelin version) changes: a digest of
all inputs is stored beside them. A file lock keeps concurrent compiles from clobbering each
other (several services and test sessions may start at once).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import solcx

from gridshare.core.chain.artifacts import BUILD_DIR, Artifact
from gridshare.core.chain.toolchain import ADAPTER, OPENZEPPELIN, PROJECT_ROOT, check_node_modules
from gridshare.core.errors import GridshareError

CONTRACTS_DIR = PROJECT_ROOT / "contracts"
STAMP = ".sources.sha256"
OPTIMIZER_RUNS = 10_000


class CompileError(GridshareError):
    """The Solidity compiler refused the sources."""


def _sources(source_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(source_dir.glob("*.sol"))}


def _digest(sources: dict[str, Path]) -> str:
    h = hashlib.sha256()
    oz_package = OPENZEPPELIN / "contracts" / "package.json"
    h.update(oz_package.read_bytes() if oz_package.exists() else b"")
    h.update(f"runs={OPTIMIZER_RUNS}".encode())
    for name, path in sources.items():
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def standard_input(sources: dict[str, Path]) -> dict[str, Any]:
    """The solc standard-JSON input for the given sources."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": path.read_text()} for name, path in sources.items()},
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": "cancun",
            "remappings": ["@openzeppelin/=@openzeppelin/"],
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }


def compile_contracts(
    source_dir: Path = CONTRACTS_DIR, build_dir: Path = BUILD_DIR, force: bool = False
) -> dict[str, Artifact]:
    """Compile every `*.sol` in `source_dir` (flat) into `build_dir`; a no-op when up to date."""
    check_node_modules()
    sources = _sources(source_dir)
    if not sources:
        raise CompileError(f"no Solidity sources in {source_dir}")
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = _digest(sources)
        stamp = build_dir / STAMP
        if not force and stamp.exists() and stamp.read_text().strip() == digest:
            return _load_all(build_dir)
        output = solcx.compile_standard(
            standard_input(sources),
            base_path=str(source_dir),
            allow_paths=[str(source_dir), str(PROJECT_ROOT / "node_modules")],
            solc_binary=str(ADAPTER),
        )
        artifacts = _artifacts(output, set(sources))
        for artifact in artifacts.values():
            _write_atomic(build_dir / f"{artifact.name}.json", json.dumps(artifact.to_json()))
        _write_atomic(stamp, digest)
        return artifacts


def _artifacts(output: dict[str, Any], own_sources: set[str]) -> dict[str, Artifact]:
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError(errors[0].get("formattedMessage", errors[0]["message"]).strip())
    artifacts: dict[str, Artifact] = {}
    for source, contracts in output["contracts"].items():
        if source not in own_sources:
            continue
        for name, data in contracts.items():
            bytecode = data["evm"]["bytecode"]["object"]
            if not bytecode:
                continue  # interfaces and abstract contracts
            artifacts[name] = Artifact(
                name, data["abi"], "0x" + bytecode, "0x" + data["evm"]["deployedBytecode"]["object"]
            )
    return artifacts


def _load_all(build_dir: Path) -> dict[str, Artifact]:
    artifacts = {}
    for path in sorted(build_dir.glob("*.json")):
        data = json.loads(path.read_text())
        artifacts[data["contractName"]] = Artifact(
            data["contractName"], data["abi"], data["bytecode"], data["deployedBytecode"]
        )
    return artifacts


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
