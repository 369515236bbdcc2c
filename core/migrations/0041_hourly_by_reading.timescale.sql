-- migrate:no-transaction
-- The hourly continuous aggregate, rebuilt so that it is right for late data of any age:
-- * each hour's first and last readings are taken in the oracle's order (device time, then
--   seq) with their own meters (`first`/`last` by one key that orders by time, then seq:
--   microseconds since the epoch times 10^19 plus seq), not the minimum and maximum meter;
-- * the refresh policy's window is unbounded (start_offset NULL): each run re-materializes
--   the hours that late or backfilled readings invalidated, however old, and only those;
-- * it is materialized in full once here, so history loaded before this migration counts.
-- Recent hours that are not materialized yet come from the raw rows (materialized_only = false).
SELECT remove_continuous_aggregate_policy('telemetry_hourly', if_exists => true);
DROP MATERIALIZED VIEW telemetry_hourly;
CREATE MATERIALIZED VIEW telemetry_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       count(*)                                                              AS readings,
       min(time)                                                             AS first_time,
       max(time)                                                             AS last_time,
       first(energy_wh_total, extract(epoch FROM time) * 1e25 + seq)         AS energy_wh_first,
       last(energy_wh_total, extract(epoch FROM time) * 1e25 + seq)          AS energy_wh_last,
       first(revenue_minor_total, extract(epoch FROM time) * 1e25 + seq)     AS revenue_minor_first,
       last(revenue_minor_total, extract(epoch FROM time) * 1e25 + seq)      AS revenue_minor_last,
       avg(power_w)                                                          AS power_w_avg,
       max(power_w)                                                          AS power_w_max,
       avg(soc_pct)                                                          AS soc_pct_avg
FROM telemetry
GROUP BY 1, 2
WITH NO DATA;
CALL refresh_continuous_aggregate('telemetry_hourly', NULL, NULL);
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => NULL, end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');
