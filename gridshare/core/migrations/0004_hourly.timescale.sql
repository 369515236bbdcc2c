-- migrate:no-transaction
-- The hourly per-device continuous aggregate (cannot be created inside a transaction).
CREATE MATERIALIZED VIEW telemetry_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       count(*)                              AS readings,
       min(time)                             AS first_time,
       max(time)                             AS last_time,
       min(energy_wh_total)                  AS energy_wh_first,
       max(energy_wh_total)                  AS energy_wh_last,
       min(revenue_minor_total)              AS revenue_minor_first,
       max(revenue_minor_total)              AS revenue_minor_last,
       avg(power_w)                          AS power_w_avg,
       max(power_w)                          AS power_w_max,
       avg(soc_pct)                          AS soc_pct_avg
FROM telemetry
GROUP BY 1, 2
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');
