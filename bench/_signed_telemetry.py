"""Signed telemetry for the oracle and audit benchmarks, as ingest stores it, cached on disk.

A device's readings are a deterministic function of the pool's name and the device's number,
so the signed data set is generated once per set of parameters and kept under `.cache/bench/`
as PostgreSQL binary COPY files; a rerun only loads them. Generating is secp256k1 signing
(coincurve, in worker processes) and costs minutes; loading is COPY, part by part, on two
connections. The rows are what ingest writes (`gridshare.ingest.writer.COLUMNS`): the signed
bytes are the canonical bytes of the payload, `sig` the device's EIP-191 signature
(r ‖ s ‖ v, v = 27/28), `received_at` a moment after the device time.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from coincurve import PrivateKey
from eth_utils import keccak

from gridshare.core.payloads import canonical_bytes, format_ts
from gridshare.core.signing import eip191_digest
from gridshare.ingest.writer import COLUMNS

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench"
FORMAT = 1  # bump when the rows generated for the same parameters change
READINGS_PER_DAY = 288
STEP = 300
DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
RECEIVED_AFTER = timedelta(seconds=2)  # ingest's latency from device time to received_at
DEVICES_PER_PART = 250
PROCESSES = 2

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)


def device_ids(name: str, devices: int) -> list[str]:
    tag = name.rsplit("-", 1)[-1]
    return [f"cp-b{tag}-{d:05d}" for d in range(1, devices + 1)]


def device_key(device_id: str) -> bytes:
    return keccak(text=f"bench-device:{device_id}")


def readings(device_id: str, d: int) -> Iterator[tuple[datetime, dict[str, object]]]:
    """A day of 5-minute readings of device number `d`, plus one past the day (so the
    period is closed): (device time, payload without `sig`)."""
    for s in range(READINGS_PER_DAY + 1):
        moment = DAY0 + timedelta(seconds=s * STEP + d % 60)
        energy = s * 600 + d + (s * d) % 100
        yield (
            moment,
            {
                "v": 1,
                "device_id": device_id,
                "type": "charging_pile",
                "seq": s,
                "ts": format_ts(moment),
                "status": "idle" if (s + d) % 97 == 0 else "charging",
                "power_w": 7000,
                "energy_wh_total": energy,
                "sessions_total": s // 12,
                "revenue_minor_total": energy // 2,
                "currency": "HKD",
            },
        )


def _field(value: object) -> bytes:
    """One field of a binary COPY row (the types of ingest's staging table)."""
    if value is None:
        return _NULL
    if isinstance(value, datetime):
        data = struct.pack(">q", (value - _PG_EPOCH) // timedelta(microseconds=1))
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, float):
        data = struct.pack(">d", value)
    else:
        data = struct.pack(">q", value)
    return struct.pack(">i", len(data)) + data


def _row(moment: datetime, fields: dict[str, object], key: PrivateKey) -> bytes:
    """The row ingest stores for this reading, signed by the device."""
    signed = canonical_bytes(fields)
    raw = key.sign_recoverable(eip191_digest(signed), hasher=None)
    values = (
        moment,
        fields["device_id"],
        fields["seq"],
        fields["status"],
        float(fields["power_w"]),  # type: ignore[arg-type]
        None,  # soc_pct: charging piles report none
        fields["energy_wh_total"],
        fields["sessions_total"],
        fields["revenue_minor_total"],
        fields["currency"],
        moment + RECEIVED_AFTER,
        signed,
        raw[:64] + bytes([raw[64] + 27]),
    )
    return struct.pack(">h", len(values)) + b"".join(map(_field, values))


def _write_part(path: Path, ids: list[str], first: int) -> None:
    """Sign the readings of `ids` (numbered from `first`) into one binary COPY file."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as out:
        out.write(_HEADER)
        for i, device_id in enumerate(ids):
            key = PrivateKey(device_key(device_id))
            out.write(b"".join(_row(m, f, key) for m, f in readings(device_id, first + i)))
        out.write(_TRAILER)
    tmp.rename(path)


def _load_part(db_url: str, path: Path, ids: list[str], first: int) -> None:
    """Generate the part unless cached, then COPY it into telemetry."""
    if not path.exists():
        _write_part(path, ids, first)
    sql = f"COPY telemetry ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
    with (
        psycopg.connect(db_url, autocommit=True) as conn,
        path.open("rb") as data,
        conn.cursor().copy(sql) as copy,
    ):
        while chunk := data.read(1 << 20):
            copy.write(chunk)


def cache_dir(name: str) -> Path:
    """Where the signed readings of this pool are kept: named by every parameter but the
    device count (a part holds the same devices in a pool of any size)."""
    params = {
        "format": FORMAT,
        "pool": name,
        "readings": READINGS_PER_DAY,
        "step": STEP,
        "day0": DAY0.isoformat(),
        "received_after": RECEIVED_AFTER.total_seconds(),
        "part": DEVICES_PER_PART,
    }
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return CACHE / f"oracle-{name}-{digest}"


def parts(name: str, ids: list[str]) -> list[tuple[Path, list[str], int]]:
    """(file, device ids, number of the first) of each part of the pool."""
    folder = cache_dir(name)
    return [
        (folder / f"part-{i // DEVICES_PER_PART:04d}-{len(chunk)}.pgcopy", chunk, i + 1)
        for i in range(0, len(ids), DEVICES_PER_PART)
        if (chunk := ids[i : i + DEVICES_PER_PART])
    ]


def load(db_url: str, name: str, ids: list[str]) -> None:
    """Store the signed readings of the pool's devices (generated once, then cached)."""
    cache_dir(name).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(PROCESSES) as pool:
        futures = [pool.submit(_load_part, db_url, *part) for part in parts(name, ids)]
        for future in futures:
            future.result()
