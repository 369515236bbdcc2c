"""`gridshare guardian …` and `gridshare agent …` (wiring only; the work is in servicing.py)."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.console import Console

from gridshare.core.chain.servicing import Sent, Servicing
from gridshare.core.settings import get_settings

guardian_app = typer.Typer(no_args_is_help=True, help="The guardian's veto in the window.")
agent_app = typer.Typer(no_args_is_help=True, help="KYC allow-list and the recovery kit.")
console = Console()


def _print(sent: list[Sent]) -> None:
    for item in sent:
        console.print(f"{item.what}: tx {item.tx_hash}", highlight=False, soft_wrap=True)
    if not sent:
        console.print("nothing to do", highlight=False)


@guardian_app.command("veto")
def veto(
    pool: str = typer.Option(..., "--pool", help="Pool name."),
    epoch: int = typer.Option(..., "--epoch", min=1, help="A pending epoch."),
    reason: str = typer.Option(..., "--reason", help="Why (its keccak256 goes on-chain)."),
) -> None:
    """Void a pending epoch and every later one of the pool."""
    _print([Servicing(get_settings()).veto(pool, epoch, reason)])


@agent_app.command("allow")
def allow(
    address: str,
    until: datetime = typer.Option(..., "--until", formats=["%Y-%m-%d"], help="Last day."),
) -> None:
    """Admit an investor to the allow-list through the end of --until (UTC)."""
    _print([Servicing(get_settings()).allow(address, until.date())])


@agent_app.command("disallow")
def disallow(address: str) -> None:
    """Remove an investor from the allow-list at once."""
    _print([Servicing(get_settings()).disallow(address)])


@agent_app.command("freeze")
def freeze(address: str) -> None:
    """Stop the holder from transferring and claiming in every pool (revenue keeps accruing)."""
    _print(Servicing(get_settings()).freeze(address, frozen=True))


@agent_app.command("unfreeze")
def unfreeze(address: str) -> None:
    """Let a frozen holder transfer and claim again."""
    _print(Servicing(get_settings()).freeze(address, frozen=False))


@agent_app.command("recover")
def recover(
    lost: str = typer.Option(..., "--lost", help="The lost wallet."),
    replacement: str = typer.Option(..., "--replacement", help="An allow-listed wallet."),
) -> None:
    """Move a lost wallet's tokens and unclaimed revenue to its replacement, every pool."""
    _print(Servicing(get_settings()).recover(lost, replacement))


@agent_app.command("force-transfer")
def force_transfer(
    pool: str = typer.Option(..., "--pool", help="Pool name."),
    source: str = typer.Option(..., "--from", help="Holder to take from."),
    target: str = typer.Option(..., "--to", help="Allow-listed receiver."),
    amount: int = typer.Option(..., "--amount", min=1, help="Token base units (10^-18)."),
) -> None:
    """Move tokens without the holder's signature (a court order)."""
    _print([Servicing(get_settings()).force_transfer(pool, source, target, amount)])
