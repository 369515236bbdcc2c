-- migrate:no-transaction
-- Raw telemetry is the signed evidence (signed_bytes, sig) that auditors re-verify, and a
-- regulated issuer keeps its records about seven years: raw rows are now dropped after
-- 2,557 days (seven years) instead of 730. The hourly aggregate's refresh window follows,
-- still a day short of the retention horizon: dropping raw chunks invalidates their range,
-- and a refresh over it would delete those hours from the aggregate. The retention policy
-- is widened first, so the window never reaches past it, even between these statements.
SELECT remove_retention_policy('telemetry', if_exists => true);
SELECT add_retention_policy('telemetry', INTERVAL '2557 days');
SELECT remove_continuous_aggregate_policy('telemetry_hourly', if_exists => true);
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => INTERVAL '2556 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');
