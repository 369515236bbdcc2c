"""gridshare: revenue rights of IoT energy assets, from device telemetry to on-chain payouts."""

__version__ = "0.1.0"
