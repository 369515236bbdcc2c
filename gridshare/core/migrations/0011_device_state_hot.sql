-- Ingest rewrites one device_state row per reading; free space on each page lets PostgreSQL
-- update it in place (HOT: no index entries, less WAL) when online/status do not change.
ALTER TABLE device_state SET (fillfactor = 50);
