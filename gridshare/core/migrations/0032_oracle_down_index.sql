-- The oracle's uptime counts a period's readings with status fault or maintenance per device
-- (`oracle/meters.py`). This partial index holds only those readings, so counting them costs
-- one lookup per device plus one entry per down reading, instead of two text comparisons on
-- every reading of the period. Inserts of other readings only evaluate the predicate.
CREATE INDEX telemetry_oracle_down_idx ON telemetry (device_id, time) INCLUDE (received_at)
    WHERE status IN ('fault', 'maintenance');
