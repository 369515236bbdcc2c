"""Protocol peers for the bridge tests: OCPP chargers built on the `ocpp` library's own
ChargePoint (1.6J and 2.0.1) over `websockets`, and the bridge as a child process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
from pathlib import Path
from typing import Any

import websockets
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v201 import ChargePoint as ChargePoint201

from tests.ingest.fleet import GRIDSHARE, wait_until


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Charger:
    """A connected charger: the library's ChargePoint with its receive loop running."""

    def __init__(self, cp: Any, ws: Any) -> None:
        self.cp, self.ws = cp, ws
        self.task = asyncio.ensure_future(cp.start())

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        await self.ws.close()


async def connect(url: str, charger_id: str, password: str, version: str = "2.0.1") -> Charger:
    """Connect as `charger_id` speaking `version` ("1.6" or "2.0.1")."""
    ws = await websockets.connect(
        f"{url}/{charger_id}",
        subprotocols=[f"ocpp{version}"],  # type: ignore[list-item]
        additional_headers=basic(charger_id, password),
        open_timeout=10,
    )
    kind = ChargePoint201 if version == "2.0.1" else ChargePoint16
    return Charger(kind(charger_id, ws, response_timeout=30), ws)


class BridgeProcess:
    """`gridshare bridge …` as a child process, its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.env, self.log_path, self.args = env, log_path, args
        self.proc: subprocess.Popen | None = None

    def start(self, ready: str) -> BridgeProcess:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it until it exits
        self.proc = subprocess.Popen(
            [GRIDSHARE, "bridge", *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_until(lambda: ready in self.log() or self.proc.poll() is not None, 60, ready)
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
