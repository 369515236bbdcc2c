"""`gridshare oracle run|attest|signer`, `gridshare operator fund`, `gridshare investor claim`."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from gridshare.core import db
from gridshare.core.logs import setup_logging
from gridshare.core.settings import get_settings
from gridshare.oracle import funding, remote, service
from gridshare.oracle.aggregator import attest_next
from gridshare.oracle.context import OracleContext
from gridshare.oracle.machine import Status

oracle_app = typer.Typer(no_args_is_help=True, help="Signed revenue attestations.")
operator_app = typer.Typer(no_args_is_help=True, help="The operator's payments.")
investor_app = typer.Typer(no_args_is_help=True, help="Investors' claims.")
console = Console()


def _context() -> OracleContext:
    """Settings, logs, and the checked database and chain (one-line errors when down)."""
    settings = get_settings()
    setup_logging(settings.log_level)
    db.connect(settings.for_service("oracle")).close()
    return OracleContext.create(settings)


@oracle_app.command("run")
def run() -> None:
    """Attest every pool's closed epochs, in a loop, until SIGTERM."""
    service.run(_context())


@oracle_app.command("attest")
def attest(
    pool: str = typer.Option(..., "--pool", help="Pool name, e.g. pv-plant-1."),
    force: bool = typer.Option(False, "--force", help="Sign a withheld or flagged epoch."),
) -> None:
    """Attest the pool's next closed epoch once; exit 0 when there is nothing to do."""
    outcome = attest_next(_context(), pool, force=force)
    console.print(outcome.message, highlight=False, soft_wrap=True)
    if outcome.status in (Status.WITHHELD, Status.FLAGGED):
        raise typer.Exit(2)


@oracle_app.command("signer")
def signer(
    key_file: Path = typer.Option(..., "--key-file", help="JSON with private_key, or 0x-hex."),
    db_url: str | None = typer.Option(None, "--db-url", help="Its own (read-only) database."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(..., "--port", min=1, max=65535),
) -> None:
    """Serve one oracle key in its own process until SIGTERM (GRIDSHARE_ORACLE_SIGNER_URLS)."""
    ctx = _context()
    account = remote.load_key(key_file)
    server = remote.serve(ctx.signer(account, db_url), host, port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    console.print(f"signer {account.address} on http://{host}:{port}", highlight=False)
    server.serve_forever()


@operator_app.command("fund")
def fund(pool: str = typer.Option(..., "--pool", help="Pool name.")) -> None:
    """Pay the pool's investors what is final and not yet funded; say when the rest is."""
    paid = funding.fund(_context(), pool)
    if paid.amount == 0:
        console.print(f"{pool}: nothing final is owed", highlight=False, soft_wrap=True)
    else:
        minted = f" (minted {paid.minted} to the operator first)" if paid.minted else ""
        console.print(
            f"{pool}: funded {paid.amount} units in tx {paid.tx_hash}{minted}", soft_wrap=True
        )
    if paid.pending and paid.next_final_at is not None:
        when = datetime.fromtimestamp(paid.next_final_at, UTC).isoformat(timespec="seconds")
        console.print(
            f"{pool}: {paid.pending} units are in the challenge window; the next epoch "
            f"becomes final at {when}, fund again then",
            highlight=False,
            soft_wrap=True,
        )


@investor_app.command("claim")
def claim(
    pool: str = typer.Option(..., "--pool", help="Pool name."),
    account: str = typer.Option(..., "--account", help="Investor index (0-based) or address."),
) -> None:
    """Claim the investor's stablecoin revenue from the pool's token."""
    ctx = _context()
    holder = funding.investor(ctx, account)
    paid = funding.claim(ctx, pool, holder)
    if paid.amount == 0:
        console.print(f"{pool}: nothing to claim for {holder.address}", soft_wrap=True)
        return
    console.print(
        f"{pool}: {holder.address} claimed {paid.amount} units in tx {paid.tx_hash}",
        soft_wrap=True,
    )
