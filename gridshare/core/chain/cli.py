"""The `gridshare deploy` command (wiring only; the work is in `deploy.py`)."""

from __future__ import annotations

import typer
from rich.console import Console

from gridshare.core.chain.deploy import deploy as deploy_contracts
from gridshare.core.chain.deployment import deployment_path
from gridshare.core.chain.toolchain import install_solc_adapter
from gridshare.core.settings import get_settings

console = Console()


def deploy(
    stablecoin: str = typer.Option(
        "", "--stablecoin", help="An existing ERC-20 to pay revenue in (default: a test coin)."
    ),
) -> None:
    """Compile the contracts and deploy them to GRIDSHARE_RPC_URL; idempotent per chain."""
    settings = get_settings()
    install_solc_adapter()
    result = deploy_contracts(settings, stablecoin=stablecoin or None)
    verb = "deployed" if result.deployed else "already deployed; nothing to do"
    console.print(f"contracts {verb} on chain {result.record.chain_id}:")
    for name, address in result.record.contracts.items():
        console.print(f"  {name}: {address}")
    console.print(f"record: {deployment_path(settings, result.record.chain_id)}")
