"""What every local-stack service shares: idempotent up, down, a one-line status."""

from __future__ import annotations

from abc import ABC, abstractmethod

from gridshare.core.errors import StackError
from gridshare.core.stack.process import ManagedProcess, port_open


class LocalService(ABC):
    """A service the stack runs as a detached process on a configured loopback port."""

    name: str
    setting: str  # the GRIDSHARE_* variable that sets its address
    host: str
    port: int
    process: ManagedProcess
    stop_timeout: float = 30.0

    def up(self) -> bool:
        """Start unless running; False if it was already running (a no-op)."""
        if self.process.pid() is not None:
            return False
        if port_open(self.host, self.port):
            raise StackError(
                f"{self.name}: port {self.port} is taken by another process; "
                f"change {self.setting} or stop that process"
            )
        self.start()
        return True

    def down(self) -> bool:
        """Stop and wait until the port is free; False if it was not running."""
        return self.process.stop(timeout=self.stop_timeout)

    def status(self) -> str:
        pid = self.process.pid()
        if pid is None:
            return "stopped"
        state = "healthy" if self.healthy() else "starting"
        return f"running pid={pid} port={self.port} {state}"

    @abstractmethod
    def start(self) -> None:
        """Start the process and wait until it is healthy."""

    @abstractmethod
    def healthy(self) -> bool:
        """True when the service answers real requests (not merely an open port)."""
