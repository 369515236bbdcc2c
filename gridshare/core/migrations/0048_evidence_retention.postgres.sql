-- Plain PostgreSQL and TimescaleDB's Apache edition keep raw telemetry, and with it the
-- signed evidence, for good (no retention policy; the hourly rollup is a view), so the full
-- edition's seven-year retention has nothing to change here.
SELECT 1;
