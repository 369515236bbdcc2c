"""Private files under the state dir: keys, passwords and logs are the owner's alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def write_private(path: Path, data: str | bytes) -> None:
    """Write atomically with mode 0600: readers see the old file or the whole new one."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and parents) if needed and give it `mode`: only its owner may list it
    (0711 lets other users pass through to a subdirectory of their own)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def open_private_log(path: Path) -> BinaryIO:
    """Open a log for appending, mode 0600 (also when an older version left it readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")
