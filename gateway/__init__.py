"""Device gateway: provisioning of device identities, database rows, broker credentials and
on-chain registration."""
