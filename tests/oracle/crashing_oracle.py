"""The real `gridshare` command, killed right after one attestation step as if by SIGKILL:

    python -m tests.oracle.crashing_oracle --crash-after computed|signed|broadcast ARGS...

runs `gridshare ARGS...` with a hook in the oracle that exits with CRASH_EXIT_CODE once the
step is committed, without any cleanup. Production code has no crash switch of its own."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from gridshare.cli import main
from gridshare.oracle.transitions import STEPS, after_step

CRASH_EXIT_CODE = 75
ROOT = Path(__file__).resolve().parents[2]  # where `-m tests.oracle.crashing_oracle` resolves


def command(crash_after: str, *args: str) -> list[str]:
    """The argv that runs `gridshare *args` and crashes after `crash_after` (run from ROOT)."""
    return [
        sys.executable,
        "-m",
        "tests.oracle.crashing_oracle",
        "--crash-after",
        crash_after,
        *args,
    ]


def crash_after(step: str) -> None:
    """Install the hook: exit at once when the oracle has committed `step`."""

    def crash(reached: str) -> None:
        if reached == step:
            logging.getLogger(__name__).warning("crash injected", extra={"fields": {"after": step}})
            os._exit(CRASH_EXIT_CODE)

    after_step(crash)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--crash-after" or sys.argv[2] not in STEPS:
        sys.exit(f"usage: crashing_oracle --crash-after {'|'.join(STEPS)} GRIDSHARE-ARGS...")
    crash_after(sys.argv[2])
    sys.argv = ["gridshare", *sys.argv[3:]]
    main()
