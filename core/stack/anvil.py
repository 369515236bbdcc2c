"""The local Anvil chain: fixed mnemonic and chain id, state dumped and reloaded across restarts."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from gridshare.core.errors import StackError
from gridshare.core.settings import Settings
from gridshare.core.stack.process import ManagedProcess, wait_until
from gridshare.core.stack.service import LocalService

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def anvil_binary() -> str:
    """Anvil from the pinned npm package (node_modules/.bin), else from PATH."""
    local = PROJECT_ROOT / "node_modules" / ".bin" / "anvil"
    found = str(local) if local.exists() else shutil.which("anvil")
    if not found:
        raise StackError("anvil: not installed; run `make setup`")
    return found


class Anvil(LocalService):
    """Lifecycle of the local chain named by GRIDSHARE_RPC_URL."""

    name = "anvil"
    setting = "GRIDSHARE_RPC_URL"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.state_path / "anvil"
        self.state_file = self.root / "state.json"
        self.process = ManagedProcess(
            "anvil",
            pid_file=self.root / "anvil.pid",
            log_file=settings.state_path / "logs" / "anvil.log",
            exe_name="anvil",
        )
        self.host = "127.0.0.1"
        self.port = settings.rpc_port

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process.start(
            [
                anvil_binary(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(self.settings.chain_id),
                "--mnemonic",
                self.settings.mnemonic,
                "--accounts",
                "20",
                "--balance",
                "100000",
                "--state",
                str(self.state_file),
                "--state-interval",
                "5",
                "--gas-limit",
                "60000000",
            ]
        )
        wait_until(self.healthy, 30, "answering JSON-RPC", self.process)

    def healthy(self) -> bool:
        try:
            reply = httpx.post(
                f"http://127.0.0.1:{self.port}",
                json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                timeout=2,
            )
            return int(reply.json()["result"], 16) == self.settings.chain_id
        except (httpx.HTTPError, ValueError, KeyError):
            return False
