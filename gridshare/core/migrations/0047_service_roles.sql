-- One database role per service (docs/database.md, "Roles"); the owner that runs the
-- migrations keeps every right:
-- * gridshare_ingest: reads everything; writes telemetry, device_state, quarantine (and
--   prunes it), device_flags, and marks devices deactivated on-chain inactive;
-- * gridshare_oracle: the attestation loop; reads everything; writes only the oracle's own
--   tables, plus the pool terms it copies from the registry (pools.currency_exponent and
--   pools.coin_decimals);
-- * gridshare_reader: the API and the oracle signers; SELECT only (granted by 0043).
-- Roles belong to the cluster: the local stack creates them, elsewhere an operator does
-- (`gridshare migrate --create-roles`). A role that does not exist is skipped, with a
-- notice, so this migration never fails on a database whose operator keeps one role.
-- On TimescaleDB, grants on a hypertable reach its chunks (new chunks copy its rights) and
-- grants on a continuous aggregate reach its materialization: nothing else to grant.
-- Tables created by later migrations are readable by all three (default privileges of the
-- migrating role); what a service may write there, its migration grants.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['gridshare_ingest', 'gridshare_oracle', 'gridshare_reader']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            RAISE NOTICE 'role % does not exist: create it, then run this file''s grants', role_name;
            CONTINUE;
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', role_name);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', role_name);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO %I',
                       role_name);
        IF role_name = 'gridshare_ingest' THEN
            GRANT INSERT ON telemetry, device_flags TO gridshare_ingest;
            GRANT INSERT, UPDATE ON device_state TO gridshare_ingest;
            GRANT INSERT, DELETE ON quarantine TO gridshare_ingest;
            GRANT UPDATE (active, updated_at) ON devices TO gridshare_ingest;
            GRANT USAGE ON SEQUENCE quarantine_id_seq, device_flags_id_seq TO gridshare_ingest;
        ELSIF role_name = 'gridshare_oracle' THEN
            GRANT INSERT, UPDATE, DELETE
                ON oracle_pools, oracle_epochs, oracle_leaves, oracle_signatures
                TO gridshare_oracle;
            GRANT UPDATE (currency_exponent, coin_decimals) ON pools TO gridshare_oracle;
        END IF;
    END LOOP;
END
$$;
