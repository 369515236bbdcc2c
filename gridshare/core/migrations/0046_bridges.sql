-- Bridges for real hardware (OCPP chargers, SunSpec inverters).
-- A pool's tariff in minor currency units per kWh: what a charging session earns per kWh
-- delivered, or what a PV plant is paid per kWh fed in. NULL: the bridges count no revenue.
ALTER TABLE pools ADD COLUMN tariff_minor_per_kwh integer
    CHECK (tariff_minor_per_kwh BETWEEN 0 AND 1000000);

-- One row per OCPP charger: the cp-… device it feeds and a salted hash of its password (the
-- password itself is shown once, by `devices provision-ocpp`).
CREATE TABLE ocpp_chargers (
    charger_id    text PRIMARY KEY CHECK (charger_id ~ '^[A-Za-z0-9_-]{1,48}$'),
    device_id     text NOT NULL UNIQUE REFERENCES devices (device_id),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- A bridge's meters per device, written only after the broker acknowledged the reading, so a
-- restarted bridge continues seq and meters without gaps or duplicates. `source` holds what
-- the hardware last reported (per-connector registers, a Modbus counter and its scale).
CREATE TABLE bridge_state (
    device_id           text PRIMARY KEY REFERENCES devices (device_id),
    last_seq            bigint NOT NULL,
    last_ts             timestamptz NOT NULL,
    status              text NOT NULL,
    energy_mwh_total    bigint NOT NULL,      -- milliwatt-hours: scale factors below 1 Wh
    revenue_micro_total bigint NOT NULL,      -- millionths of a minor unit
    sessions_total      bigint,
    last_transaction    text,
    source              jsonb NOT NULL DEFAULT '{}',
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Meter values signed by the meter itself (OCMF and the like), kept beside the reading that
-- the bridge built from them: the source evidence behind a device's signed reading.
CREATE TABLE reading_evidence (
    device_id       text NOT NULL REFERENCES devices (device_id),
    seq             bigint NOT NULL,
    ordinal         smallint NOT NULL,        -- several signed values may back one reading
    ts              timestamptz NOT NULL,
    format          text NOT NULL,            -- 'OCMF', or the charger's signingMethod
    measurand       text,
    signed_data     text NOT NULL,
    signing_method  text,
    encoding_method text,
    public_key      text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq, ordinal)
);
