"""Fixtures for the simulator tests: the admin MQTT observer of the gateway tests."""

from tests.gateway.observer import observer_factory

__all__ = ["observer_factory"]
