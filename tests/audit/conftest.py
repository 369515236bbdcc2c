"""Audit fixtures: the oracle suite's stack (contracts deployed, pools with devices
registered on-chain and signed telemetry) and a real `gridshare api` process to audit
through."""

from __future__ import annotations

from tests.api.conftest import api_settings, client, server
from tests.oracle.conftest import ctx, db, deployed

__all__ = ["api_settings", "client", "ctx", "db", "deployed", "server"]
