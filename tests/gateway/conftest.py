"""Fixtures for the gateway tests: the session stack with the contracts deployed, and an
admin MQTT observer."""

from __future__ import annotations

import pytest

from gridshare.core.chain.compile import compile_contracts
from gridshare.core.chain.deploy import deploy
from gridshare.core.settings import Settings
from tests.gateway.observer import observer_factory

__all__ = ["deployed", "observer_factory"]


@pytest.fixture(scope="session")
def deployed(stack_settings: Settings) -> Settings:
    """The session stack with the contracts deployed (idempotent)."""
    compile_contracts()
    deploy(stack_settings)
    return stack_settings
