-- The oracle's side of provenance.
-- * Each leaf's exact ABI encoding (`leaf_data`): signers and auditors take a device's start
--   values from it after checking it against the on-chain root, never from the convenience
--   columns beside it (which stay for SQL and BI readers).
-- * Why a device was excluded from an epoch (`excluded`: the reason name its leaf carries as
--   a code, '' when it counts) and which reading and field failed (`exclusion_detail`).
-- * A read-only role for the oracle signers and the API: they read the database, only ingest
--   and the attestation loop write it. Roles belong to the cluster, so it is created once,
--   and only when the migrating user may create roles (else an admin creates it and runs
--   the grants below).
ALTER TABLE oracle_leaves
    ADD COLUMN leaf_data bytea,
    ADD COLUMN excluded text NOT NULL DEFAULT '',
    ADD COLUMN exclusion_detail text;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gridshare_reader')
       AND EXISTS (SELECT FROM pg_roles WHERE rolname = current_user
                   AND (rolsuper OR rolcreaterole)) THEN
        CREATE ROLE gridshare_reader LOGIN;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'gridshare_reader') THEN
        GRANT USAGE ON SCHEMA public TO gridshare_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO gridshare_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO gridshare_reader;
    ELSE
        RAISE NOTICE 'role gridshare_reader not created (needs CREATEROLE); create it as an admin';
    END IF;
END
$$;
