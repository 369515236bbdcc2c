-- Telemetry on plain PostgreSQL: a regular table, the same columns and names as the
-- TimescaleDB variant, and an hourly view with the continuous aggregate's columns.
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
    CONSTRAINT telemetry_device_seq_key UNIQUE (device_id, seq)
);
CREATE INDEX telemetry_device_time_idx ON telemetry (device_id, time DESC);
CREATE INDEX telemetry_time_idx ON telemetry (time DESC);
