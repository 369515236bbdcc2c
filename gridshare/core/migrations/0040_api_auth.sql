-- Sign-In with Ethereum nonces: single use (deleted when presented) and expiring.
CREATE TABLE auth_nonces (
    nonce      text PRIMARY KEY,
    address    text NOT NULL,                    -- checksummed address it was issued to
    message    text NOT NULL,                    -- the EIP-4361 message issued with it
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_nonces_expires_idx ON auth_nonces (expires_at);
