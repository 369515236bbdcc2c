"""Running services as an unprivileged user when the stack is started as root.

PostgreSQL refuses to run as root, so as root we start it as the `postgres` system user and
give that user the directories it needs, plus traversal (not listing) of their parents.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from gridshare.core.errors import StackError


def service_user(name: str) -> str | None:
    """The user to run a service as: `name` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError as exc:
        raise StackError(f"system user `{name}` missing; run `make setup`") from exc
    return name


def share_path_with(path: Path, user: str, tree: bool = True) -> None:
    """Give `user` ownership of `path` (recursively if `tree`) and traversal of its parents."""
    entry = pwd.getpwnam(user)
    path.mkdir(parents=True, exist_ok=True)
    targets = [path, *path.rglob("*")] if tree else [path]
    for target in targets:
        os.chown(target, entry.pw_uid, entry.pw_gid)
    allow_traversal(path)


def allow_traversal(path: Path) -> None:
    """Let other users pass through (not list) every parent of `path`. Checked at every
    start: tools may tighten a parent later (pytest resets its temp root to 0700)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)
