"""The Solidity toolchain: the npm WebAssembly compiler behind the `scripts/solc` adapter.

py-solc-x, ape-solidity and slither look for `solc-v0.8.28` in py-solc-x's install folder;
`install_solc_adapter()` puts a tiny launcher there that runs the adapter with this node.
`python -m gridshare.core.chain.toolchain` installs it and compiles the contracts
(what `make setup` runs).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import solcx

from gridshare.core.errors import GridshareError

PROJECT_ROOT = Path(__file__).resolve().parents[3]
ADAPTER = PROJECT_ROOT / "scripts" / "solc"
SOLC_VERSION = "0.8.28"
OPENZEPPELIN = PROJECT_ROOT / "node_modules" / "@openzeppelin"


class ToolchainError(GridshareError):
    """The compiler toolchain is not installed."""


def node_binary() -> str:
    found = shutil.which("node")
    if not found:
        raise ToolchainError("node: not installed; run `make setup`")
    return found


def check_node_modules() -> None:
    """Fail with one line when the pinned npm packages are missing."""
    for needed in (PROJECT_ROOT / "node_modules" / "solc", OPENZEPPELIN / "contracts"):
        if not needed.is_dir():
            raise ToolchainError(f"{needed.relative_to(PROJECT_ROOT)} missing; run `make setup`")


def toolchain_available() -> bool:
    """True where node and the pinned npm compiler are installed."""
    return shutil.which("node") is not None and (PROJECT_ROOT / "node_modules" / "solc").is_dir()


def installed_adapter_path() -> Path:
    """Where py-solc-x (and so ape-solidity and slither) look for solc 0.8.28."""
    return Path(solcx.get_solcx_install_folder()) / f"solc-v{SOLC_VERSION}"


def install_solc_adapter() -> Path:
    """Install (idempotently) the launcher for the adapter into py-solc-x's folder."""
    check_node_modules()
    target = installed_adapter_path()
    script = f'#!/bin/sh\nexec "{node_binary()}" "{ADAPTER}" "$@"\n'
    if target.is_symlink() or (target.exists() and target.read_text(errors="replace") != script):
        target.unlink()
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(script)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        tmp.replace(target)
    return target


def main() -> None:
    from gridshare.core.chain.compile import compile_contracts

    path = install_solc_adapter()
    print(f"solc adapter installed at {path}")
    artifacts = compile_contracts()
    print(f"compiled {len(artifacts)} contracts into contracts/.build")


if __name__ == "__main__":
    main()
