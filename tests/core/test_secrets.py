"""Secrets stay secret: the development mnemonic only on the development chain, none on
Anvil's command line or in its log, private files and directories, one JWT secret for API
workers starting together, and no mnemonic or private key in any log after a demo."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gridshare.api.auth import Authenticator
from gridshare.core.chain.accounts import derive_accounts
from gridshare.core.settings import ANVIL_MNEMONIC, Settings
from gridshare.core.stack.anvil import Anvil
from tests.support import stack_settings_for

GRIDSHARE = str(Path(sys.executable).with_name("gridshare"))
OWN_MNEMONIC = (
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
)


def test_development_mnemonic_is_refused_on_chain_id_1(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(chain_id=1)
    assert Settings(chain_id=1, mnemonic=OWN_MNEMONIC).chain_id == 1
    result = subprocess.run(
        [GRIDSHARE, "stack", "status"],
        env={**os.environ, "GRIDSHARE_CHAIN_ID": "1", "GRIDSHARE_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GRIDSHARE_MNEMONIC" in lines[0] and "chain id 1" in lines[0]
    assert "test test" not in result.stderr


def test_anvil_never_sees_the_mnemonic_and_logs_no_keys(tmp_path: Path) -> None:
    settings = stack_settings_for(tmp_path / "state").model_copy(update={"mnemonic": OWN_MNEMONIC})
    anvil = Anvil(settings)
    anvil.up()
    try:
        cmdline = Path(f"/proc/{anvil.process.pid()}/cmdline").read_bytes().decode()
        assert "abandon" not in cmdline and "test test" not in cmdline
        admin = derive_accounts(settings).admin
        reply = httpx.post(
            settings.rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                  "params": [admin.address, "latest"]},
        ).json()  # fmt: skip
        assert int(reply["result"], 16) > 0
    finally:
        anvil.down()
    log = anvil.process.log_file.read_text()
    assert "abandon" not in log and admin.private_key[2:] not in log
    assert stat.S_IMODE(anvil.process.log_file.stat().st_mode) == 0o600


def test_state_dir_keys_and_logs_are_private(stack_settings: Settings) -> None:
    state = stack_settings.state_path
    assert stat.S_IMODE(state.stat().st_mode) in (0o700, 0o711)  # 0711: root, postgres user
    for directory in ("logs", "tls", "mosquitto"):
        assert stat.S_IMODE((state / directory).stat().st_mode) == 0o700, directory
    private = [
        *(state / "logs").glob("*.log"),
        *(state / "tls").glob("*"),
        *(state / "mosquitto").glob("passwd*"),
        state / "mosquitto" / "service-accounts.json",
    ]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _secret_of(state_dir: str, barrier: multiprocessing.synchronize.Barrier, out) -> None:
    barrier.wait()
    out.put(Authenticator.from_settings(Settings(state_dir=Path(state_dir))).jwt_secret)


def test_two_api_workers_starting_together_share_one_secret(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(10):
        state = tmp_path / f"state-{round_}"
        barrier, out = context.Barrier(2), context.Queue()
        workers = [
            context.Process(target=_secret_of, args=(str(state), barrier, out)) for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        secrets = [out.get(timeout=30), out.get(timeout=30)]
        for worker in workers:
            worker.join(30)
        assert secrets[0] == secrets[1] and len(secrets[0]) >= 43  # >= 32 random bytes
        path = state / "api" / "jwt_secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_no_mnemonic_or_private_key_in_any_log_after_a_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gridshare.core import stack
    from gridshare.demo import DemoPlan, run

    settings = stack_settings_for(tmp_path / "state")
    try:
        run(settings, DemoPlan(per_pool=2, days=2, wall_seconds=20), once=True, fresh=False)
    finally:
        stack.down(settings)
    output = capsys.readouterr()
    state = settings.state_path
    secrets = _secrets_under(state)
    assert len(secrets) > 10
    texts = {path: path.read_text(errors="replace") for path in state.rglob("*.log")}
    texts["demo output"] = output.out + output.err
    assert len(texts) >= 4  # postgres, mosquitto, anvil, ingest, oracle, api
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret in {where}"


def _secrets_under(state: Path) -> set[str]:
    """The mnemonic, every private key (with and without 0x) and broker password."""
    found = {ANVIL_MNEMONIC}
    accounts = json.loads((state / "accounts.json").read_text())
    keys = [accounts["admin"], accounts["operator"], *accounts["oracles"], *accounts["investors"]]
    devices = [json.loads(p.read_text()) for p in (state / "devices").glob("*.json")]
    for item in [*keys, *devices]:
        found |= {item["private_key"], item["private_key"].removeprefix("0x")}
    found |= {d["mqtt_password"] for d in devices}
    found |= set(json.loads((state / "mosquitto" / "service-accounts.json").read_text()).values())
    return found
