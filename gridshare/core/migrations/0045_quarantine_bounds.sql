-- Bounded quarantine: the raw bytes are kept up to a cap (GRIDSHARE_QUARANTINE_PAYLOAD_BYTES),
-- with the size and SHA-256 of the whole message, so an oversized or flooding publisher
-- cannot fill the database and an operator can still match a row to the bytes a device sent.
-- Rows written before this migration hold their whole payload; they get both from it.
ALTER TABLE quarantine
    ADD COLUMN payload_bytes  integer,   -- size of the whole message as received
    ADD COLUMN payload_sha256 bytea;     -- SHA-256 of the whole message
UPDATE quarantine SET payload_bytes = octet_length(payload), payload_sha256 = sha256(payload);
-- Retention deletes by age (GRIDSHARE_QUARANTINE_RETENTION_DAYS).
CREATE INDEX quarantine_received_idx ON quarantine (received_at);
