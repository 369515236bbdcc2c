-- Each pool's revenue currency and the terms its investor amounts are computed with:
-- telemetry in another currency is quarantined as wrong_currency, and the oracle converts
-- revenue in minor units (10^-currency_exponent) to stablecoin units (10^-coin_decimals).
-- The oracle keeps currency_exponent and coin_decimals equal to the registry's.
ALTER TABLE pools
    ADD COLUMN currency text NOT NULL DEFAULT 'HKD' CHECK (currency ~ '^[A-Z]{3}$'),
    ADD COLUMN currency_exponent smallint NOT NULL DEFAULT 2
        CHECK (currency_exponent BETWEEN 0 AND 4),
    ADD COLUMN coin_decimals smallint NOT NULL DEFAULT 6 CHECK (coin_decimals BETWEEN 0 AND 8);
