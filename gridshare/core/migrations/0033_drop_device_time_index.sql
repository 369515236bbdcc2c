-- telemetry_device_time_idx (device_id, time DESC) from 0002 is covered by 0031's
-- telemetry_oracle_idx (device_id, time, seq): every query that used it (the API's readings
-- of a device by time, ORDER BY time DESC, seq DESC) scans that index backwards, without
-- sorting on seq. Dropping it saves ingest one index entry per reading and about 60 bytes of
-- storage per reading.
DROP INDEX IF EXISTS telemetry_device_time_idx;
