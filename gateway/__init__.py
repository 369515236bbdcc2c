"""Device gateway: provisioning device identities, database rows, broker credentials and on-chain registration."""
