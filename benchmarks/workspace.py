"""Where benchmarks run: the work folder, the run's sizes, the Moltis fixtures, an
isolated environment, one event loop for the async API, and the machine's description."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = REPO / "benchmarks" / "_work"
# Moltis's own files, part of the repository
FIXTURES = REPO / "tests" / "fixtures" / "moltis"
DOCS_EXAMPLE = "docs-example.moltis.toml"
TEMPLATE = "template.moltis.toml"
ACTOR = "bench"
# A fixed ledger key, so cached databases stay readable from run to run (throwaway data);
# random-looking, since a key that is not (one repeated byte) is refused
LEDGER_KEY = hashlib.blake2b(b"moltis-config-ledger bench key").hexdigest()[:64]


@dataclass(frozen=True)
class Sizes:
    """How much each figure does; `--quick` shrinks everything to a smoke test."""

    quick: bool
    big_events: int  # the large ledger (1,000,000 in a full run)
    es_events: int  # events in the eventsourcing aggregate that is rebuilt
    rounds: int  # alternating rounds per comparison (>= 10 in a full run)
    write_block: int  # durable writes per block
    write_rounds: int
    file_block: int  # FileConfigStore writes per block (each rewrites a 57 KB file)
    read_block: int  # head reads per block
    past_block: int  # past-point reads per block (percentiles come from these)
    writer_ops: int  # increments per writer process per round (figure 8)
    writer_rounds: int
    subprocesses: int  # fresh processes per round for the open+read and RSS figures
    profile_seconds: float  # how long the library side of a missed figure is profiled

    @classmethod
    def make(cls, quick: bool) -> Sizes:
        if quick:
            return cls(quick=True, big_events=10_000, es_events=5_000, rounds=3,
                       write_block=30, write_rounds=3, file_block=5, read_block=300,
                       past_block=20, writer_ops=40, writer_rounds=1, subprocesses=1,
                       profile_seconds=0.1)
        return cls(quick=False, big_events=1_000_000, es_events=100_000, rounds=10,
                   write_block=200, write_rounds=15, file_block=20, read_block=5_000,
                   past_block=100, writer_ops=400, writer_rounds=10, subprocesses=2,
                   profile_seconds=1.5)


@dataclass
class Ctx:
    """What every figure group gets: the sizes, the PostgreSQL DSN (or None), and the
    report's closing notes to add to."""

    sizes: Sizes
    pg_dsn: str | None = None
    notes: list[str] = field(default_factory=list)
    machine: list[tuple[str, str]] = field(default_factory=list)  # facts a group found
    profile: bool = True  # profile the library side of missed figures


def isolate_env() -> None:
    """No figure reads the machine's real MOLTIS_* settings, ~/.moltis or key file;
    subprocesses inherit this environment."""
    for name in list(os.environ):
        if name.startswith("MOLTIS_"):
            del os.environ[name]
    os.environ["MOLTIS_CONFIG_DIR"] = str(work_dir() / "config")
    os.environ["MOLTIS_DATA_DIR"] = str(work_dir() / "data")
    os.environ["MOLTIS_LEDGER_KEY"] = LEDGER_KEY
    os.environ["MOLTIS_LEDGER_ACTOR"] = ACTOR


_work = [DEFAULT_WORK]


def set_work_dir(path: Path) -> None:
    _work[0] = path.resolve()


def work_dir() -> Path:
    """Where databases and copies live (benchmarks/_work unless --work says otherwise)."""
    _work[0].mkdir(parents=True, exist_ok=True)
    return _work[0]


def remove_db(path: Path) -> Path:
    """Delete a SQLite database with its -wal and -shm files; returns the path."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")
    return path


def scratch(name: str) -> Path:
    """A fresh, empty database path in the work folder."""
    return remove_db(work_dir() / name)


class Skip(Exception):  # noqa: N818  (a signal, not an error)
    """A figure group cannot run here (no fixture, no DSN, an optional package missing)."""


class MissingFixture(Skip):
    pass


def fixture(name: str) -> Path:
    """A private copy of a Moltis fixture (the repository's copy is never written to)."""
    src = FIXTURES / name
    if not src.is_file():
        raise MissingFixture(f"fixture {name} is absent (looked in {FIXTURES})")
    dest = work_dir() / "fixtures" / name
    dest.parent.mkdir(exist_ok=True)
    if not dest.exists() or dest.read_bytes() != src.read_bytes():
        shutil.copyfile(src, dest)
    return dest


def fixture_doc(name: str) -> dict[str, Any]:
    with fixture(name).open("rb") as f:
        return tomllib.load(f)


_LOOP: asyncio.AbstractEventLoop | None = None


def aio(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the one event loop of this process (the stores' async API is
    measured from inside it, so loop start-up is never part of a figure)."""
    global _LOOP  # noqa: PLW0603
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


def sqlite_store(path: Path, doc: dict[str, Any] | None = None) -> Any:
    """A `SqliteConfigStore` (FULL, the default) holding `doc` as its first import."""
    from ledger import SqliteConfigStore

    store = SqliteConfigStore(path)
    if doc is not None:
        aio(store.save_raw(doc, actor=ACTOR, source="import"))
    return store


# -- the machine -----------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def filesystem_of(path: Path) -> str:
    """The mount that holds `path` (longest mount point prefix in /proc/self/mounts)."""
    real = os.path.realpath(path)
    best = ("", "unknown", "unknown")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            dev, mnt, fstype, *_ = line.split()
            mnt = mnt.replace("\\040", " ")
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[0]):
                best = (mnt, fstype, dev)
    return f"{best[1]} on {best[2]} (mounted at {best[0]})"


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def machine_facts(extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    import sqlite3

    import apsw

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cores", str(os.cpu_count())),
        ("CPU", _cpu_model()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("SQLite (apsw)", apsw.sqlite_lib_version()),
        ("SQLite (stdlib sqlite3, used by eventsourcing)", sqlite3.sqlite_version),
        ("apsw", apsw.apsw_version()),
        ("msgspec", _version("msgspec")),
        ("blake3", _version("blake3")),
        ("eventsourcing", _version("eventsourcing")),
        ("psycopg", _version("psycopg")),
        ("work folder", f"{_shown(work_dir())}: {filesystem_of(work_dir())}"),
        ("load average at start (1/5/15 min)", load),
        *extra,
    ]


def async_block(op: Callable[[], Awaitable[object]]) -> Callable[[int], float]:
    """A harness side for an async operation: `n` awaits timed inside the event loop."""

    async def block(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await op()
        return time.perf_counter() - t0

    return lambda n: aio(block(n))


def async_each(op: Callable[[], Awaitable[object]]) -> Callable[[int], list[float]]:
    """Like `async_block`, but one duration per operation (for percentiles)."""

    async def block(n: int) -> list[float]:
        out = []
        clock = time.perf_counter
        for _ in range(n):
            t0 = clock()
            await op()
            out.append(clock() - t0)
        return out

    return lambda n: aio(block(n))


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.worker", *args]


def run_worker(*args: str, timeout: float = 600) -> dict[str, Any]:
    """Run `benchmarks.worker` in a fresh process; its JSON answer."""
    proc = subprocess.run(worker_command(*args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
