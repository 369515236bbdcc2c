"""A detached child process with a pid file and a log file under the state dir.

The processes outlive the command that started them (`stack up` returns), so everything
`down` and `status` need is on disk: the pid file and the expected executable name, which
guards against a recycled pid.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gridshare.core.errors import StackError
from gridshare.core.files import open_private_log, private_dir


@dataclass(frozen=True)
class ManagedProcess:
    """One service process: how to start it, where its pid and log live, how to stop it."""

    name: str
    pid_file: Path
    log_file: Path
    exe_name: str
    stop_signal: int = signal.SIGTERM

    @classmethod
    def in_state_dir(
        cls, name: str, state_path: Path, stop_signal: int = signal.SIGTERM
    ) -> ManagedProcess:
        """The stack's usual layout: executable `name`, its pid file in the state dir's
        `name/` folder, its log with the stack's logs."""
        return cls(
            name,
            pid_file=state_path / name / f"{name}.pid",
            log_file=state_path / "logs" / f"{name}.log",
            exe_name=name,
            stop_signal=stop_signal,
        )

    def pid(self) -> int | None:
        """The pid of the running service, or None (stale pid files are removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        cmdline = _cmdline(pid)
        # an empty cmdline is a process still inside execve (Popen returns that early)
        if _alive(pid) and (self.exe_name in cmdline or not cmdline):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(
        self,
        argv: Sequence[str],
        user: str | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Start the service detached from this process; record its pid."""
        private_dir(self.log_file.parent)
        with open_private_log(self.log_file) as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else {**os.environ, **env},
                start_new_session=True,
                close_fds=True,
                **as_user(user),
            )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the service and wait for it to exit; True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        if not _wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the service's log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        return " | ".join(text[-lines:])


def as_user(user: str | None) -> dict[str, object]:
    """Popen arguments that drop to `user` entirely: uid, primary group and no extra groups
    (keeping root's group would deny access where only "other" may traverse)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: ManagedProcess) -> None:
    """Poll `check` until it holds; fail with the service's last log lines otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.pid() is None:
            raise StackError(f"{proc.name} exited while starting: {proc.log_tail()}")
        time.sleep(0.1)
    raise StackError(f"{proc.name} not {what} after {timeout:.0f}s: {proc.log_tail()}")


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port nobody listens on right now (for private stacks of tests and benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(size: int) -> int:
    """A base port whose `size` ports from it are all free, below the ephemeral range (where
    outgoing connections take their local ports): a clustered broker's ports."""
    for _ in range(100):
        base = random.randrange(20000, 32000, 50)
        if all(_bindable(base + offset) for offset in range(size)):
            return base
    raise StackError("no free port range for the cluster")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in ("Z", "X", "")


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def raise_open_files_limit() -> int:
    """One socket per device (simulator, broker): lift the soft RLIMIT_NOFILE to the hard
    limit; children started afterwards inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
