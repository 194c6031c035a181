"""The CLI in a real process that, at one chosen file-system step, kills itself
(SIGKILL) or first runs other CLI commands to completion:
`python -m tests.killed_cli KIND NAME N MEANWHILE ARGS...` runs `moltis-ledger ARGS`
and, at the N-th audit event of KIND ("remove", or "open" for writing) on a file whose
name holds NAME, before the operation runs, either kills itself (MEANWHILE `kill`) or
runs each command of MEANWHILE (a JSON list of argument lists) in a process of its own,
which must succeed, then goes on. SQLite's own commits are not events Python sees; a
step right after one (the restore's removal of its staged file after the swap, the head
mark written after an import's commit) marks a point just after it. No library code is
replaced: the worker runs the real CLI entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def killed_cli(env: dict[str, str], kind: str, name: str, nth: int, *args: str
               ) -> subprocess.CompletedProcess[str]:
    """The worker in its own process with exactly `env`; returncode -9 when killed."""
    return _worker_process(env, kind, name, nth, "kill", args)


def paused_cli(env: dict[str, str], kind: str, name: str, nth: int,
               meanwhile: list[str] | list[list[str]], *args: str
               ) -> subprocess.CompletedProcess[str]:
    """`moltis-ledger ARGS` in its own process; at the chosen step, `moltis-ledger
    MEANWHILE` (one command, or a list of them) runs, each in its own process with the
    same environment, and must succeed first (each reported on stderr as
    `[meanwhile] COMMAND exit CODE`)."""
    if meanwhile and isinstance(meanwhile[0], str):
        meanwhile = [meanwhile]  # type: ignore[list-item]
    return _worker_process(env, kind, name, nth, json.dumps(meanwhile), args)


def _worker_process(env: dict[str, str], kind: str, name: str, nth: int, at_step: str,
                    args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.killed_cli", kind, name, str(nth),
                           at_step, *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _run_meanwhile(commands: list[list[str]]) -> Callable[[], None]:
    def run() -> None:
        for command in commands:
            done = subprocess.run([sys.executable, "-m", "ledger", *command],
                                  capture_output=True, text=True, check=False)
            sys.stderr.write(f"[meanwhile] {command[0]} exit {done.returncode}: "
                             f"{done.stdout}{done.stderr}\n")
            if done.returncode != 0:
                os._exit(99)
    return run


def _worker(kind: str, name: str, nth: int, at_step: str, args: list[str]) -> None:
    action = _kill if at_step == "kill" else _run_meanwhile(json.loads(at_step))
    seen = 0

    def step(event_kind: str, path: Any) -> None:
        nonlocal seen
        if seen < nth and event_kind == kind and isinstance(path, (str, bytes, os.PathLike)) \
                and name in os.path.basename(os.fsdecode(path)):
            seen += 1
            if seen == nth:
                action()

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
    _worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
