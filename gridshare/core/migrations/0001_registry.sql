-- Pools and devices: what the operator provisioned (mirrors the on-chain registries).
CREATE TABLE pools (
    name          text PRIMARY KEY,
    pool_id       text NOT NULL UNIQUE,          -- 0x-hex keccak256(name), as on-chain
    device_type   text NOT NULL CHECK (device_type IN ('charging_pile', 'pv_plant', 'battery_swap')),
    share_bps     integer NOT NULL CHECK (share_bps BETWEEN 0 AND 10000),
    token_address text,
    token_symbol  text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    device_id     text PRIMARY KEY CHECK (device_id ~ '^(cp|pv|bs)-[A-Za-z0-9_-]{1,60}$'),
    type          text NOT NULL CHECK (type IN ('charging_pile', 'pv_plant', 'battery_swap')),
    pool          text NOT NULL REFERENCES pools (name),
    address       text NOT NULL,                 -- checksummed signing address
    active        boolean NOT NULL DEFAULT true,
    registered_tx text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_pool_idx ON devices (pool, device_id);
