-- Ingest: quarantined messages looked up per claimed device (API, operators).
CREATE INDEX quarantine_device_idx ON quarantine (device_id, received_at DESC);
