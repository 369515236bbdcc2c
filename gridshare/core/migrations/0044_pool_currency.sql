-- Each pool's revenue currency and the terms its investor amounts are computed with:
-- telemetry in another currency is quarantined as wrong_currency, and the oracle converts
-- revenue in minor units (10^-currency_exponent) to stablecoin units (10^-coin_decimals).
-- The oracle keeps currency_exponent and coin_decimals equal to the registry's.
-- `currency` and the quarantine reasons may already be there (added with the provenance
-- checks, in the same form): both statements leave the same result either way.
ALTER TABLE pools
    ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT 'HKD' CHECK (currency ~ '^[A-Z]{3}$'),
    ADD COLUMN currency_exponent smallint NOT NULL DEFAULT 2
        CHECK (currency_exponent BETWEEN 0 AND 4),
    ADD COLUMN coin_decimals smallint NOT NULL DEFAULT 6 CHECK (coin_decimals BETWEEN 0 AND 8);

ALTER TABLE quarantine DROP CONSTRAINT IF EXISTS quarantine_reason_check;
ALTER TABLE quarantine ADD CONSTRAINT quarantine_reason_check CHECK (reason IN (
    'parse_error', 'schema_error', 'unknown_device', 'bad_signature', 'meter_regression',
    'too_large', 'conflicting_reading', 'bad_timestamp', 'implausible_reading',
    'wrong_currency'));
