-- Telemetry on TimescaleDB: a hypertable (1-day chunks), an hourly continuous aggregate,
-- compression after 7 days and retention of raw rows for two years (the hourly aggregate is
-- kept). Unique indexes on a hypertable must contain the time column, so uniqueness of
-- (device_id, seq) is enforced by ingest (it inserts only keys not yet stored) and backed by
-- the (device_id, seq, time) index, which catches redelivered copies of the same message.
CREATE TABLE telemetry (
    time                timestamptz NOT NULL,
    device_id           text NOT NULL,
    seq                 bigint NOT NULL,
    status              text NOT NULL,
    power_w             double precision,
    soc_pct             double precision,
    energy_wh_total     bigint NOT NULL,
    sessions_total      bigint,
    revenue_minor_total bigint NOT NULL,
    currency            text NOT NULL DEFAULT 'HKD',
    received_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT telemetry_device_seq_key UNIQUE (device_id, seq, time)
);
SELECT create_hypertable('telemetry', by_range('time', INTERVAL '1 day'));
CREATE INDEX telemetry_device_time_idx ON telemetry (device_id, time DESC);

ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC, seq DESC'
);
SELECT add_compression_policy('telemetry', INTERVAL '7 days');
SELECT add_retention_policy('telemetry', INTERVAL '730 days');
