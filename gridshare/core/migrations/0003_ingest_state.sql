-- Rejected messages (kept whole, with the reason) and each device's latest state.
CREATE TABLE quarantine (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    reason      text NOT NULL CHECK (reason IN ('parse_error', 'schema_error', 'unknown_device',
                                                'bad_signature', 'meter_regression', 'too_large')),
    detail      text NOT NULL,
    payload     bytea NOT NULL,
    device_id   text                              -- claimed id from the topic, if any
);
CREATE INDEX quarantine_reason_idx ON quarantine (reason, received_at DESC);

CREATE TABLE device_state (
    device_id           text PRIMARY KEY REFERENCES devices (device_id),
    online              boolean NOT NULL DEFAULT false,
    status              text,
    last_seen           timestamptz,              -- when the platform last heard from it
    last_ts             timestamptz,              -- device clock of the latest reading
    last_seq            bigint,
    readings            bigint NOT NULL DEFAULT 0,
    power_w             double precision,
    soc_pct             double precision,
    energy_wh_total     bigint,
    sessions_total      bigint,
    revenue_minor_total bigint,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_state_online_idx ON device_state (online, status);
