"""Oracle: settlement periods, per-device Merkle leaves, M-of-N signed attestations, funding."""
