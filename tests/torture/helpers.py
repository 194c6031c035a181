"""Shared tools of the torture suite: a scratch folder in memory, the CLI as a
subprocess, a small process pool, and a real ~40-event ledger to torture."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ledger import MoltisConfig, Secret, SqliteConfigStore
from ledger.backends.sqlite import SqliteBackend
from ledger.engine.vault import KeySource
from tests.conftest import run

T = TypeVar("T")
R = TypeVar("R")

ROOT = Path(__file__).resolve().parents[2]
POOL = 2  # subprocess trials run two at a time (the suite must fit 2 cores)
CLI_TIMEOUT = 120.0  # generous: a hang fails the trial instead of the whole run


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh folder in /dev/shm when there is one (file copies cost nothing there),
    removed afterwards."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=f"ledger-torture-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
            umask: int | None = None, timeout: float = CLI_TIMEOUT) -> Result:
    """`python -m ledger ARGS` in a subprocess (its own umask if given); a hang fails."""
    preexec: Callable[[], Any] | None = None
    if umask is not None:
        def preexec() -> None:
            os.umask(umask)
    proc = subprocess.run([sys.executable, "-m", "ledger", *args], input=stdin,
                          capture_output=True, env=env, cwd=ROOT, timeout=timeout,
                          preexec_fn=preexec, check=False)
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                  proc.stderr.decode("utf-8", "replace"))


def pool_map(fn: Callable[[T], R], items: Iterable[T], workers: int = POOL) -> list[R]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def head_of(path: Path) -> tuple[int, bytes]:
    """(seq, hash) of a SQLite ledger's head, read without writing anything."""
    backend = SqliteBackend(path, read_only=True)
    try:
        head = backend.head()
    finally:
        backend.close()
    return head.seq, head.hash


class Worker:
    """A worker process whose stdout lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.workers", *args], cwd=ROOT,
                                     env=env, stdout=subprocess.PIPE, stderr=self.log)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.endswith(b"\n"):
                break  # a report cut by the kill: not acknowledged to us
            line = raw.decode()
            if line == "ready\n":
                self.ready.set()
            else:
                self.lines.append(line)
        self.ready.set()  # (a worker that died early: kill() says why)

    def kill(self) -> None:
        """SIGKILL it (if it is still running), wait, and collect what it reported."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()
        if self.proc.returncode != -signal.SIGKILL:
            tail = Path(self.log.name).read_text(errors="replace")[-3000:]
            raise AssertionError(f"the worker exited by itself ({self.proc.returncode}):\n{tail}")


ACTORS = ["alice", "bøb@ci", "карл", "ci-bot", "ü"]
REASONS = ["", "open the port", "rotation ☃", "because", "日本語の理由"]


def build_real_ledger(path: Path, key: bytes, snapshot_every: int = 8) -> int:
    """A ledger of 40 events like an operator's: config changes (multi-byte actors and
    reasons, some empty), provider keys, config secrets, a shred and a rollback. The
    WAL is folded into the file, so copying the one file copies the ledger."""
    from ledger.ops.history import rollback

    store = SqliteConfigStore(path, keys=KeySource(key=key))
    ledger = store.ledger
    ledger.snapshot_every = snapshot_every
    n = 0

    def who() -> dict[str, str]:
        return {"actor": ACTORS[n % len(ACTORS)], "reason": REASONS[n % len(REASONS)]}

    def typed(fn: Callable[[MoltisConfig], None]) -> None:
        nonlocal n
        assert run(store.update_raw(fn, **who())).appended
        n += 1

    def provider(name: str, **kw: Any) -> None:
        nonlocal n
        assert run(store.providers.set(name, **kw, **who())).appended
        n += 1

    typed(lambda c: (setattr(c.server, "port", 8080), setattr(c.identity, "name", "Atlas ☃")))
    provider("openai", api_key="sk-openai-torture-1", models=["gpt-5"])
    provider("anthropic", api_key="sk-anthropic-torture-1")

    def cfg_secret(c: MoltisConfig) -> None:
        from ledger.schema.providers import ProviderConfig

        entry = c.providers.get("mistral") or ProviderConfig()
        entry.api_key = Secret("sk-mistral-torture")
        c.providers["mistral"] = entry

    typed(cfg_secret)
    for i in range(24):
        if i % 4 == 0:
            typed(lambda c, i=i: setattr(c.server, "port", 9000 + i))
        elif i % 4 == 1:
            typed(lambda c, i=i: setattr(c.tools, "agent_timeout_secs", 30 + i))
        elif i % 4 == 2:
            typed(lambda c, i=i: setattr(c.tools.exec.sandbox, "packages",
                                         [f"pkg-{i}", "curl", "git ✓"]))
        else:
            typed(lambda c, i=i: c.channels.telegram.__setitem__(f"bot{i}", {"note": f"n{i}"}))
    assert rollback(ledger, 20, actor="ops", reason="back to seq 20").commit is not None
    n += 1
    provider("openai", api_key="sk-openai-torture-2")  # the first key is now history
    first = next(c.secret for ev in ledger.events() for c in ev.changes
                 if c.secret is not None and c.doc == "keys" and c.path[0] == "openai")
    assert first is not None
    assert ledger.shred([first], actor="security", reason="leaked key").appended
    n += 1
    for i in range(40 - ledger.head_state().seq):
        if i % 2:
            typed(lambda c, i=i: setattr(c.identity, "name", f"Atlas {i} ✨"))
        else:
            provider(f"custom-acme{i}", api_key=f"sk-acme-{i}", models=[f"m{i}"])
    assert ledger.head_state().seq == 40
    assert ledger.verify().ok
    ledger.backend.checkpoint()
    store.ledger.close()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return 40

