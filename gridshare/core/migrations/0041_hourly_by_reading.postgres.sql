-- The hourly figures take each hour's first and last readings in the oracle's order (device
-- time, then seq) and their own meters, instead of the minimum and maximum meter: a
-- clock-skewed reading that ingest accepted (it checks meters in seq order) no longer mixes
-- one reading's time with another's meters.
DROP VIEW telemetry_hourly;
CREATE VIEW telemetry_hourly AS
SELECT date_bin('1 hour', time, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket,
       device_id,
       count(*)                                                        AS readings,
       min(time)                                                       AS first_time,
       max(time)                                                       AS last_time,
       (array_agg(energy_wh_total ORDER BY time, seq))[1]              AS energy_wh_first,
       (array_agg(energy_wh_total ORDER BY time DESC, seq DESC))[1]    AS energy_wh_last,
       (array_agg(revenue_minor_total ORDER BY time, seq))[1]          AS revenue_minor_first,
       (array_agg(revenue_minor_total ORDER BY time DESC, seq DESC))[1] AS revenue_minor_last,
       avg(power_w)                                                    AS power_w_avg,
       max(power_w)                                                    AS power_w_max,
       avg(soc_pct)                                                    AS soc_pct_avg
FROM telemetry
GROUP BY 1, 2;
