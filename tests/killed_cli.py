"""The CLI in a real process that kills itself (SIGKILL) at one chosen file-system step:
`python -m tests.killed_cli KIND NAME N ARGS...` runs `moltis-ledger ARGS` and, at the
N-th audit event of KIND ("remove", or "open" for writing) on a file whose name holds
NAME, kills itself before the operation runs. SQLite's own commits are not events
Python sees; a step right after one (the restore's removal of its staged file after the
swap, the head mark written after an import's commit) marks a crash just after it. No
library code is replaced: the worker runs the real CLI entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def killed_cli(env: dict[str, str], kind: str, name: str, nth: int, *args: str
               ) -> subprocess.CompletedProcess[str]:
    """The worker in its own process with exactly `env`; returncode -9 when killed."""
    return subprocess.run([sys.executable, "-m", "tests.killed_cli", kind, name, str(nth),
                           *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def _worker(kind: str, name: str, nth: int, args: list[str]) -> None:
    seen = 0

    def step(event_kind: str, path: Any) -> None:
        nonlocal seen
        if event_kind == kind and isinstance(path, (str, bytes, os.PathLike)) \
                and name in os.path.basename(os.fsdecode(path)):
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    def hook(event: str, hook_args: tuple[Any, ...]) -> None:
        if event == "open" and len(hook_args) >= 3 and isinstance(hook_args[2], int) \
                and hook_args[2] & WRITE_FLAGS:
            step("open", hook_args[0])
        elif event == "os.remove":
            step("remove", hook_args[0])

    from ledger.cli import run

    sys.addaudithook(hook)
    sys.exit(run(args))


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
