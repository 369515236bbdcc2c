"""Bridges that let real hardware feed the platform: OCPP chargers and SunSpec inverters."""
