-- Simulator devices created with `gridshare sim --ephemeral` (and their pools) are kept for
-- their telemetry but marked, so the oracle and the chain never treat them as real assets.
ALTER TABLE pools ADD COLUMN ephemeral boolean NOT NULL DEFAULT false;
ALTER TABLE devices ADD COLUMN ephemeral boolean NOT NULL DEFAULT false;
