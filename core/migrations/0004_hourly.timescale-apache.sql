-- TimescaleDB's Apache-2 edition has no continuous aggregates: the hourly per-device figures
-- are a plain view with the aggregate's columns, as on plain PostgreSQL (the API reads raw
-- rows on this edition; migration 0041 redefines the view).
CREATE VIEW telemetry_hourly AS
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
GROUP BY 1, 2;
