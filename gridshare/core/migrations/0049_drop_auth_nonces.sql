-- Sign-in nonces are stateless now (HMAC-authenticated, see docs/api.md): the API only reads
-- the database, and nothing uses the table that held them.
DROP TABLE IF EXISTS auth_nonces;
