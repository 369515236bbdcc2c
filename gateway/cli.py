"""`gridshare devices …`: provisioning, key rotation, revocation (wiring only; see provision.py)."""

from __future__ import annotations

import typer
from rich.console import Console

from gridshare.core.logs import setup_logging
from gridshare.core.payloads import DeviceType
from gridshare.core.settings import Settings, get_settings
from gridshare.gateway.flags import clear_flags
from gridshare.gateway.ocpp import provision_ocpp, set_tariff
from gridshare.gateway.provision import provision, revoke, rotate_key

app = typer.Typer(no_args_is_help=True, help="Device identities, pools and registration.")
console = Console()


def _settings() -> Settings:
    """The settings, logging set up as they say (commands that change devices log why)."""
    settings = get_settings()
    setup_logging(settings.log_level)
    return settings


@app.command("provision")
def provision_command(
    pools: int = typer.Option(..., "--pools", min=1, help="Pools to have (cycling the types)."),
    per_pool: int = typer.Option(..., "--per-pool", min=0, help="Devices per pool (at least)."),
    device_type: DeviceType | None = typer.Option(None, "--type", help="Only this type."),
    share_bps: int | None = typer.Option(
        None, "--share-bps", min=1, max=10000, help="Investors' share of revenue (new pools)."
    ),
    skip_chain: bool = typer.Option(
        False, "--skip-chain", help="Keys, database and broker only; a later run registers."
    ),
    rated_power_w: int | None = typer.Option(
        None, "--rated-power-w", min=1, help="Rated power of new devices, W (default per type)."
    ),
    max_tariff: int | None = typer.Option(
        None, "--max-tariff", min=1, help="New pools' maximum tariff, minor units per kWh."
    ),
) -> None:
    """Create pools of devices: keys, DB rows, broker logins, on-chain tokens and registry."""
    settings = _settings()
    result = provision(
        settings, pools, per_pool, device_type, share_bps, not skip_chain, rated_power_w, max_tariff
    )
    console.print(
        f"pools: {len(result.pools)} ({len(result.pools_created)} new); devices: "
        f"{result.devices_total} ({len(result.devices_created)} new, "
        f"{result.broker_logins_added} broker logins added) in {result.seconds:.1f}s"
    )
    if result.chain:
        for pool, token in result.chain.pools.items():
            console.print(f"  {pool}: token {token}")
        console.print(f"  devices registered on-chain now: {result.chain.devices_registered_now}")


@app.command("rotate-key")
def rotate_key_command(device_id: str = typer.Argument(..., help="e.g. cp-000001")) -> None:
    """Give a device a new signing key and broker password (chain, database, broker, file)."""
    settings = _settings()
    identity = rotate_key(settings, device_id)
    console.print(f"{device_id}: new signing address {identity.address}")


@app.command("revoke")
def revoke_command(device_id: str = typer.Argument(..., help="e.g. cp-000001")) -> None:
    """Take a device out of service: broker login and session, database, chain."""
    settings = _settings()
    on_chain = revoke(settings, device_id)
    state = "deactivated on-chain" if on_chain else "not active on-chain"
    console.print(f"{device_id}: revoked (broker login removed, inactive; {state})")


@app.command("provision-ocpp")
def provision_ocpp_command(
    pool: str = typer.Option(..., "--pool", help="A charging-pile pool, e.g. charging-pile-1."),
    charger_id: str = typer.Option(..., "--charger-id", help="The charger's OCPP identity."),
    skip_chain: bool = typer.Option(False, "--skip-chain", help="Register on-chain later."),
) -> None:
    """A device for an OCPP charger; prints the charger's password (shown only once)."""
    settings = _settings()
    charger = provision_ocpp(settings, pool, charger_id, chain=not skip_chain)
    console.print(
        f"{charger.charger_id}: device {charger.device_id} in {charger.pool}"
        f" ({'new' if charger.created else 'new password'})"
    )
    typer.echo(charger.password)


@app.command("tariff")
def tariff_command(
    pool: str = typer.Option(..., "--pool"),
    minor_per_kwh: int | None = typer.Option(
        None, "--minor-per-kwh", min=0, max=1_000_000, help="Omit to clear."
    ),
) -> None:
    """Set a pool's tariff (minor units per kWh) for the bridges' revenue."""
    settings = get_settings()
    set_tariff(settings, pool, minor_per_kwh)
    console.print(f"{pool}: tariff {minor_per_kwh} per kWh")


@app.command("clear-flag")
def clear_flag_command(
    device_id: str = typer.Argument(..., help="e.g. cp-000001"),
    reason: str = typer.Option(..., "--reason", help="Why the device is trusted again."),
) -> None:
    """Clear a device's open flags (e.g. a conflicting reading), recording who and why."""
    settings = _settings()
    cleared = clear_flags(settings, device_id, reason)
    console.print(
        f"{device_id}: {cleared} open flag(s) cleared" if cleared else f"{device_id}: no open flags"
    )
