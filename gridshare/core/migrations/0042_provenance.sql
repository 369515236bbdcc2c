-- Provenance at ingest: the evidence of every accepted reading, device flags (equivocation),
-- and the device-level bounds ingest checks readings against. One file for both flavors: on
-- TimescaleDB (2.6 and later) a compressed hypertable accepts ADD COLUMN ... NOT NULL DEFAULT.

-- 1. Evidence. `signed_bytes` is exactly what the device's EIP-191 signature covers (the
-- payload object without `sig`, keys sorted, no whitespace, UTF-8), as received and
-- verified; `sig` the 65-byte signature r || s || v (v = 27 or 28). Re-verify a row with
-- recover(keccak256("\x19Ethereum Signed Message:\n" || len || signed_bytes), sig) == the
-- device's on-chain signer. Ingest writes both for every row it stores. Rows stored before
-- this migration hold empty bytes in both (no evidence was kept for them); the default is
-- dropped again, so an INSERT that does not give the evidence fails.
ALTER TABLE telemetry ADD COLUMN signed_bytes bytea NOT NULL DEFAULT '\x'::bytea;
ALTER TABLE telemetry ADD COLUMN sig bytea NOT NULL DEFAULT '\x'::bytea;
ALTER TABLE telemetry ALTER COLUMN signed_bytes DROP DEFAULT;
ALTER TABLE telemetry ALTER COLUMN sig DROP DEFAULT;

-- 2. New quarantine reasons.
ALTER TABLE quarantine DROP CONSTRAINT IF EXISTS quarantine_reason_check;
ALTER TABLE quarantine ADD CONSTRAINT quarantine_reason_check CHECK (reason IN (
    'parse_error', 'schema_error', 'unknown_device', 'bad_signature', 'meter_regression',
    'too_large', 'conflicting_reading', 'bad_timestamp', 'implausible_reading',
    'wrong_currency'));

-- 3. Device bounds. Per device type, the defaults a device or pool gets when provisioning
-- gives none: rated power (W) and the pool's maximum tariff (minor units of the pool's
-- currency per kWh). Ingest quarantines as `implausible_reading` a reading whose meters rose,
-- from the neighbouring reading by seq, by more than the rated power allows over the device
-- time between them (with a margin and a slack, see docs/ingest.md), or whose revenue rose
-- by more than that energy at the pool's maximum tariff.
CREATE TABLE device_type_defaults (
    device_type              text PRIMARY KEY
        CHECK (device_type IN ('charging_pile', 'pv_plant', 'battery_swap')),
    rated_power_w            bigint NOT NULL CHECK (rated_power_w > 0),
    max_tariff_minor_per_kwh bigint NOT NULL CHECK (max_tariff_minor_per_kwh > 0)
);
INSERT INTO device_type_defaults VALUES
    ('charging_pile', 150000, 1000),   -- a DC fast charger; HK$10/kWh
    ('pv_plant', 1000000, 500),        -- the 1 MW feed-in tariff tier; HK$5/kWh
    ('battery_swap', 20000, 2000);     -- a 16-slot cabinet; swap fees per kWh charged

ALTER TABLE devices ADD COLUMN rated_power_w bigint CHECK (rated_power_w > 0);
ALTER TABLE pools ADD COLUMN max_tariff_minor_per_kwh bigint CHECK (max_tariff_minor_per_kwh > 0);
ALTER TABLE pools ADD COLUMN currency text NOT NULL DEFAULT 'HKD' CHECK (currency ~ '^[A-Z]{3}$');
UPDATE devices d SET rated_power_w = t.rated_power_w
    FROM device_type_defaults t WHERE t.device_type = d.type;
UPDATE pools p SET max_tariff_minor_per_kwh = t.max_tariff_minor_per_kwh
    FROM device_type_defaults t WHERE t.device_type = p.device_type;

-- Rows inserted without a value get their type's default (so every writer of devices and
-- pools, old or new, leaves the column set); then the columns are NOT NULL.
CREATE FUNCTION devices_rated_power_default() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.rated_power_w IS NULL THEN
        SELECT rated_power_w INTO NEW.rated_power_w
            FROM device_type_defaults WHERE device_type = NEW.type;
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION pools_max_tariff_default() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.max_tariff_minor_per_kwh IS NULL THEN
        SELECT max_tariff_minor_per_kwh INTO NEW.max_tariff_minor_per_kwh
            FROM device_type_defaults WHERE device_type = NEW.device_type;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER devices_rated_power_default BEFORE INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_rated_power_default();
CREATE TRIGGER pools_max_tariff_default BEFORE INSERT ON pools
    FOR EACH ROW EXECUTE FUNCTION pools_max_tariff_default();
ALTER TABLE devices ALTER COLUMN rated_power_w SET NOT NULL;
ALTER TABLE pools ALTER COLUMN max_tariff_minor_per_kwh SET NOT NULL;

-- 4. Device flags: evidence that a device cannot be trusted until an operator has looked.
-- Ingest adds one row per conflicting reading (reason `conflicting_reading`: a second,
-- validly signed reading for a (device_id, seq) already stored with other signed bytes; the
-- stored one stays in telemetry, the conflicting one is here and in quarantine). A device is
-- flagged while it has a row with cleared_at NULL (view `flagged_devices`); the oracle
-- excludes flagged devices. `gridshare devices clear-flag ID --reason TEXT` sets cleared_at,
-- cleared_by and clear_reason on every open row of the device. Rows are never deleted and a
-- clearance is never changed (trigger below): the history stays.
CREATE TABLE device_flags (
    id           bigserial PRIMARY KEY,
    device_id    text NOT NULL REFERENCES devices (device_id),
    reason       text NOT NULL,                  -- a quarantine reason, e.g. conflicting_reading
    detail       text NOT NULL,
    seq          bigint,                         -- the reading's seq, when one is concerned
    signed_bytes bytea,                          -- the conflicting copy's signed bytes
    sig          bytea,                          -- ... and its signature (65 bytes)
    received_at  timestamptz,                    -- when ingest received that copy
    flagged_at   timestamptz NOT NULL DEFAULT now(),
    cleared_at   timestamptz,
    cleared_by   text,                           -- operator (OS user@host) who cleared it
    clear_reason text,
    CHECK ((cleared_at IS NULL) = (cleared_by IS NULL)
           AND (cleared_at IS NULL) = (clear_reason IS NULL)),
    CHECK (clear_reason IS NULL OR length(btrim(clear_reason)) > 0)
);
CREATE INDEX device_flags_device_idx ON device_flags (device_id, flagged_at);
CREATE INDEX device_flags_open_idx ON device_flags (device_id) WHERE cleared_at IS NULL;

CREATE FUNCTION device_flags_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'device_flags rows are never deleted';
    END IF;
    IF OLD.cleared_at IS NOT NULL
       OR (NEW.id, NEW.device_id, NEW.reason, NEW.detail, NEW.seq, NEW.signed_bytes, NEW.sig,
           NEW.received_at, NEW.flagged_at)
          IS DISTINCT FROM
          (OLD.id, OLD.device_id, OLD.reason, OLD.detail, OLD.seq, OLD.signed_bytes, OLD.sig,
           OLD.received_at, OLD.flagged_at) THEN
        RAISE EXCEPTION 'a device flag is only ever cleared, once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER device_flags_keep BEFORE UPDATE OR DELETE ON device_flags
    FOR EACH ROW EXECUTE FUNCTION device_flags_keep();

-- The devices flagged now: since when, how many open flags, and their reasons.
CREATE VIEW flagged_devices AS
SELECT device_id, min(flagged_at) AS flagged_since, count(*) AS open_flags,
       array_agg(DISTINCT reason ORDER BY reason) AS reasons
FROM device_flags WHERE cleared_at IS NULL GROUP BY device_id;
