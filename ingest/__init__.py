"""Ingest worker: MQTT telemetry to PostgreSQL/TimescaleDB, nothing lost, nothing doubled."""
