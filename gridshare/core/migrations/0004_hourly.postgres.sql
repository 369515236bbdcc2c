-- Hourly per-device figures as a plain view with the continuous aggregate's columns.
CREATE VIEW telemetry_hourly AS
SELECT date_bin('1 hour', time, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket,
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
