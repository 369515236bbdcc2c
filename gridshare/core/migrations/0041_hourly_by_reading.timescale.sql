-- migrate:no-transaction
-- The hourly continuous aggregate, rebuilt so that it is right for late data of any age:
-- * each hour's first and last readings are taken in the oracle's order (device time, then
--   seq) with their own meters: `first`/`last` by one numeric key that orders by time, then
--   seq (microseconds since the epoch times 10^19 plus seq; seq < 2^63 < 10^19), taken
--   from the UTC timestamp so that it is immutable, as a continuous aggregate needs
--   (`extract(epoch FROM time)` on timestamptz is only stable: TimescaleDB before 2.20
--   refuses it, later ones warn). A composite key, ROW(time, seq), is no alternative: the
--   per-chunk partial aggregation cannot pass an anonymous record between its steps;
-- * the refresh policy's window reaches back 729 days: each run re-materializes the hours
--   that late or backfilled readings invalidated, of any age short of the retention
--   horizon, and only those, but never the hours the 730-day retention policy has dropped
--   (dropping raw chunks invalidates their range, and a refresh over it would delete those
--   hours from the aggregate);
-- * it is materialized in full once here, up to the policy's end, so history loaded before
--   this migration counts. Later hours come from the raw rows (materialized_only = false).
SELECT remove_continuous_aggregate_policy('telemetry_hourly', if_exists => true);
DROP MATERIALIZED VIEW telemetry_hourly;
CREATE MATERIALIZED VIEW telemetry_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       count(*)        AS readings,
       min(time)       AS first_time,
       max(time)       AS last_time,
       first(energy_wh_total, extract(epoch FROM time AT TIME ZONE 'UTC') * 1e25 + seq)
                       AS energy_wh_first,
       last(energy_wh_total, extract(epoch FROM time AT TIME ZONE 'UTC') * 1e25 + seq)
                       AS energy_wh_last,
       first(revenue_minor_total, extract(epoch FROM time AT TIME ZONE 'UTC') * 1e25 + seq)
                       AS revenue_minor_first,
       last(revenue_minor_total, extract(epoch FROM time AT TIME ZONE 'UTC') * 1e25 + seq)
                       AS revenue_minor_last,
       avg(power_w)    AS power_w_avg,
       max(power_w)    AS power_w_max,
       avg(soc_pct)    AS soc_pct_avg
FROM telemetry
GROUP BY 1, 2
WITH NO DATA;
CALL refresh_continuous_aggregate('telemetry_hourly', NULL, now() - INTERVAL '1 hour');
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => INTERVAL '729 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');
