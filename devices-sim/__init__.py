"""Device fleet simulator: realistic PV, charging-pile and swap-cabinet telemetry over MQTT."""
