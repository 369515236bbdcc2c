-- The oracle's covering index on telemetry (both flavors: on TimescaleDB it is built on each
-- uncompressed chunk, where the epochs being attested live). Every lookup and the per-device
-- aggregate of `oracle/meters.py` read only these columns, in (device_id, time, seq) order,
-- so they become index-only scans: a device's readings of a period are adjacent in the index
-- instead of one heap page per reading, and ORDER BY time, seq needs no sort. Index-only
-- scans rely on the visibility map, i.e. on (auto)vacuum having visited the pages.
-- Cost: one more index entry per insert, about 76 bytes with a 12-character device id. The build takes a
-- write lock on telemetry for its duration (run it at a quiet time on a large table).
CREATE INDEX telemetry_oracle_idx ON telemetry (device_id, time, seq)
    INCLUDE (received_at, energy_wh_total, revenue_minor_total, sessions_total);
