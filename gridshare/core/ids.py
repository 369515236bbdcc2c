"""On-chain ids, written once. A pool's id and a device's DeviceRegistry key are both
keccak256 of the name as UTF-8; memoized, because the oracle and the auditor hash every
device id of a 10,000-device pool for each leaf."""

from __future__ import annotations

from functools import lru_cache

from sha3 import keccak_256  # C keccak


@lru_cache(maxsize=1 << 20)
def text_id(name: str) -> bytes:
    """keccak256 of `name` as UTF-8: a pool id or a device key on-chain."""
    return keccak_256(name.encode("utf-8")).digest()


def hex_id(name: str) -> str:
    """`text_id` as 0x-hex, the form the database and the API show."""
    return "0x" + text_id(name).hex()
