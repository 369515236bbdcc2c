"""The local Anvil chain: fixed chain id, state dumped and reloaded across restarts.

The mnemonic never reaches Anvil: it would show on its command line (`ps`) and in the account
banner it prints. Every transaction is signed in-process anyway, so Anvil needs no keys: with
the development mnemonic its own default accounts are the same ones; with any other, it
starts without accounts and the ones derived here are funded through `anvil_setBalance`.
Anvil runs `--quiet`, so its log never holds keys.
"""

from __future__ import annotations

import shutil

import httpx

from gridshare.core.chain.accounts import derive_accounts
from gridshare.core.chain.toolchain import PROJECT_ROOT
from gridshare.core.errors import StackError
from gridshare.core.files import private_dir
from gridshare.core.settings import ANVIL_MNEMONIC, Settings
from gridshare.core.stack.process import ManagedProcess, wait_until
from gridshare.core.stack.service import LocalService

BALANCE_WEI = 100_000 * 10**18


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
        self.process = ManagedProcess.in_state_dir("anvil", settings.state_path)
        self.host = "127.0.0.1"
        self.port = settings.rpc_port

    def start(self) -> None:
        private_dir(self.root)
        private_dir(self.process.log_file.parent)
        development = self.settings.mnemonic.split() == ANVIL_MNEMONIC.split()
        self.process.start(
            [
                anvil_binary(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(self.settings.chain_id),
                "--quiet",
                "--accounts",
                "20" if development else "0",
                "--balance",
                str(BALANCE_WEI // 10**18),
                "--state",
                str(self.state_file),
                "--state-interval",
                "5",
                "--gas-limit",
                "60000000",
            ]
        )
        wait_until(self.healthy, 30, "answering JSON-RPC", self.process)
        if not development:
            self._fund()

    def _fund(self) -> None:
        """Give the derived accounts their balance (once: a restart reloads the state)."""
        accounts = derive_accounts(self.settings)
        for account in [accounts.admin, accounts.operator, *accounts.oracles, *accounts.investors]:
            if int(self._rpc("eth_getBalance", [account.address, "latest"]), 16) == 0:
                self._rpc("anvil_setBalance", [account.address, hex(BALANCE_WEI)])

    def _rpc(self, method: str, params: list) -> str:
        reply = httpx.post(
            f"http://127.0.0.1:{self.port}",
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
            timeout=5,
        ).json()
        if "result" not in reply:
            raise StackError(f"anvil: {method} failed: {str(reply.get('error'))[:200]}")
        return reply["result"]

    def healthy(self) -> bool:
        try:
            return int(self._rpc("eth_chainId", []), 16) == self.settings.chain_id
        except (httpx.HTTPError, ValueError, StackError):
            return False
