-- Telemetry on TimescaleDB's Apache-2 edition: the same hypertable as the full edition's
-- variant, without what only the full edition has (compression and retention policies). The
-- raw rows are kept, as on plain PostgreSQL. Unique indexes on a hypertable must contain the
-- time column, so uniqueness of (device_id, seq) is enforced by ingest (see the full variant).
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
