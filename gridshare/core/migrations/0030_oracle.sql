-- The oracle's state: each pool's epoch grid, each epoch's attestation as it moves through
-- computed -> signed -> submitted -> confirmed (or withheld / flagged), its per-device leaves
-- (with the meter values used at the bounds, so late data is carried, never rewritten), and
-- every signer's answer.

CREATE TABLE oracle_pools (
    pool           text PRIMARY KEY REFERENCES pools (name),
    epoch1_start   timestamptz NOT NULL,         -- start of the first period holding a reading
    period_seconds integer NOT NULL CHECK (period_seconds > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE oracle_epochs (
    pool            text NOT NULL REFERENCES oracle_pools (pool),
    epoch           bigint NOT NULL CHECK (epoch >= 1),
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    state           text NOT NULL CHECK (state IN ('computed', 'signed', 'submitted',
                                                   'confirmed', 'withheld', 'flagged')),
    data_cutoff     timestamptz NOT NULL,        -- readings received after it count as late
    energy_wh       numeric(78, 0) NOT NULL,
    revenue_minor   numeric(78, 0) NOT NULL,
    investor_amount numeric(78, 0) NOT NULL,     -- stablecoin units (6 decimals)
    device_count    integer NOT NULL,
    silent_devices  integer NOT NULL,
    adjustment_energy_wh     numeric(78, 0) NOT NULL DEFAULT 0,  -- late data carried in
    adjustment_revenue_minor numeric(78, 0) NOT NULL DEFAULT 0,
    leaves_root     text NOT NULL,
    digest          text NOT NULL,               -- EIP-712 digest the signers sign
    flags           jsonb NOT NULL DEFAULT '[]', -- why withheld / flagged
    forced          boolean NOT NULL DEFAULT false,
    signers         text[],                      -- addresses whose signatures were submitted
    signatures      text[],                      -- in ascending signer order
    tx_hash         text,
    tx_nonce        bigint,
    tx_raw          text,                        -- the signed transaction, re-broadcast as is
    submitter       text,
    block_number    bigint,
    gas_used        bigint,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    signed_at       timestamptz,
    submitted_at    timestamptz,
    confirmed_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool, epoch),
    CHECK (period_end > period_start)
);
CREATE INDEX oracle_epochs_state_idx ON oracle_epochs (state, pool);

CREATE TABLE oracle_leaves (
    pool            text NOT NULL,
    epoch           bigint NOT NULL,
    device_id       text NOT NULL,
    energy_wh       numeric(78, 0) NOT NULL,
    revenue_minor   numeric(78, 0) NOT NULL,
    sessions        bigint NOT NULL,
    readings        integer NOT NULL,
    first_seq       bigint NOT NULL,
    last_seq        bigint NOT NULL,
    uptime_seconds  integer NOT NULL,
    meter_resets    integer NOT NULL,
    adjustment_energy_wh     numeric(78, 0) NOT NULL,  -- part of the figure that is late data
    adjustment_revenue_minor numeric(78, 0) NOT NULL,  -- of earlier, already attested epochs
    start_energy_wh     bigint NOT NULL,        -- meter values used at the bounds; the next
    end_energy_wh       bigint NOT NULL,        -- epoch starts from these end values
    start_revenue_minor bigint NOT NULL,
    end_revenue_minor   bigint NOT NULL,
    start_sessions      bigint NOT NULL,
    end_sessions        bigint NOT NULL,
    late_readings   integer NOT NULL,           -- readings of earlier periods received late
    leaf            text NOT NULL,              -- keccak256(keccak256(abi.encode(fields)))
    PRIMARY KEY (pool, epoch, device_id),
    FOREIGN KEY (pool, epoch) REFERENCES oracle_epochs (pool, epoch) ON DELETE CASCADE
);

CREATE TABLE oracle_signatures (
    pool       text NOT NULL,
    epoch      bigint NOT NULL,
    signer     text NOT NULL,
    digest     text,                            -- what this signer computed (null: it failed)
    signature  text,
    agrees     boolean NOT NULL,
    detail     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool, epoch, signer),
    FOREIGN KEY (pool, epoch) REFERENCES oracle_epochs (pool, epoch) ON DELETE CASCADE
);
