-- The bridges' own role (docs/database.md, "Roles"): `gridshare bridge ocpp|sunspec` reads
-- devices, pools and charger logins and writes only its meter states and the meters' own
-- signed values. Skipped, with a notice, where the role does not exist (see 0047).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gridshare_bridge') THEN
        RAISE NOTICE 'role gridshare_bridge does not exist: create it, then run this file''s grants';
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA public TO gridshare_bridge;
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO gridshare_bridge;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO gridshare_bridge;
    GRANT INSERT, UPDATE ON bridge_state TO gridshare_bridge;
    GRANT INSERT ON reading_evidence TO gridshare_bridge;
END
$$;
