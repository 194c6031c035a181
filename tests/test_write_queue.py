"""The queue of writer processes in front of SQLite's write lock (issue 16).

Writers take an exclusive flock on `<database>.lock` before their transaction, so a
waiting writer sleeps in the kernel instead of polling SQLite's lock, and wakes when the
holder is done; the busy timeout still bounds the wait. The lock here is held by the
test through its own open file (as another process's writer would hold it: flock locks
belong to the open file), never simulated."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ledger import SqliteConfigStore, StoreBusyError
from ledger.backends import sqlite
from tests.conftest import run

DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600}}
PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time


def increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def new_store(path: Path, **kw: Any) -> SqliteConfigStore:
    store = SqliteConfigStore(path, **kw)
    run(store.save_raw(DOC, actor="setup", source="import"))
    return store


def hold(path: Path) -> int:
    """Take the queue's lock as another writer would (our own open file)."""
    fd = os.open(f"{path}.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def count_polls(store: SqliteConfigStore) -> list[int]:
    """How often the backend's busy handler polls SQLite's lock (the real handler runs)."""
    backend = store.ledger.backend
    polls = [0]

    class Counting(sqlite._FairWait):
        __slots__ = ()

        def __call__(self, prior_calls: int) -> bool:
            polls[0] += 1
            return super().__call__(prior_calls)

    counting = Counting(backend._fair_wait.timeout_s)  # type: ignore[attr-defined]
    backend._fair_wait = counting  # type: ignore[attr-defined]
    backend._conn.set_busy_handler(counting)  # type: ignore[attr-defined]
    return polls


def helpers(before: set[threading.Thread]) -> list[threading.Thread]:
    """Queue helper threads started since `before` (blocked in flock for a writer)."""
    return [t for t in threading.enumerate()
            if t.name == "ledger-write-queue" and t not in before and t.is_alive()]


def wait_until(cond: Any) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not cond():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def test_a_writer_sleeps_in_the_queue_and_goes_when_the_holder_is_done(tmp_path):
    path = tmp_path / "q.db"
    store = new_store(path)
    polls = count_polls(store)
    fd = hold(path)
    before = set(threading.enumerate())
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.ledger.update_typed(increment, actor="waiter")
        except BaseException as err:
            errors.append(err)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    # it is waiting in the queue (its helper thread is blocked in flock), not polling
    wait_until(lambda: bool(helpers(before)))
    assert not done.is_set()
    os.close(fd)  # the holder is done
    thread.join(PATIENCE_S)
    assert done.is_set() and not errors
    assert polls[0] == 0  # SQLite's lock was never found held: nobody polled it
    assert run(store.load_raw()).tools.agent_timeout_secs == 601


def test_the_busy_timeout_still_bounds_the_wait_and_the_lock_is_given_back(tmp_path):
    path = tmp_path / "t.db"
    new_store(path).ledger.close()
    store = SqliteConfigStore(path, busy_timeout=0.2)
    run(store.load_raw())
    fd = hold(path)
    with pytest.raises(StoreBusyError, match=r"t\.db: the ledger is locked by another writer"):
        store.ledger.update_typed(increment, actor="impatient")
    with pytest.raises(StoreBusyError):  # without waiting, at once
        store.ledger.update_typed(increment, actor="impatient", wait=False)
    os.close(fd)
    # the helper left blocked by the writer that gave up gets the lock and gives it back
    probe = os.open(f"{path}.lock", os.O_RDWR)

    def free() -> bool:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(probe, fcntl.LOCK_UN)
        return True

    wait_until(free)
    os.close(probe)
    store.ledger.update_typed(increment, actor="later")
    assert run(store.load_raw()).tools.agent_timeout_secs == 601
    assert store.ledger.verify().ok


def test_a_writer_gone_while_waiting_leaves_the_queue_usable(tmp_path):
    """The writer that gave up is the one that comes back: it finds its helper still
    blocked and waits on it instead of starting a second one."""
    path = tmp_path / "r.db"
    new_store(path).ledger.close()
    store = SqliteConfigStore(path, busy_timeout=0.1)
    run(store.load_raw())
    fd = hold(path)
    before = set(threading.enumerate())
    for _ in range(3):
        with pytest.raises(StoreBusyError):
            store.ledger.update_typed(increment, actor="impatient")
    assert len(helpers(before)) == 1
    store.ledger.backend._fair_wait.timeout_s = PATIENCE_S  # type: ignore[attr-defined]
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(store.ledger.update_typed(increment, actor="w")))
    thread.start()
    os.close(fd)
    thread.join(PATIENCE_S)
    assert result and result[0].appended
    assert run(store.load_raw()).tools.agent_timeout_secs == 601


def test_the_queue_file_is_private_and_never_followed(tmp_path):
    path = tmp_path / "p.db"
    old = os.umask(0)
    try:
        store = new_store(path)
    finally:
        os.umask(old)
    lock = Path(f"{path}.lock")
    assert stat.S_IMODE(lock.lstat().st_mode) == 0o600
    store.ledger.close()
    # a link planted in its place: writers go without the queue, the target is untouched
    lock.unlink()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.chmod(victim, 0o644)
    lock.symlink_to(victim)
    store = SqliteConfigStore(path)
    store.ledger.update_typed(increment, actor="w")
    assert victim.read_bytes() == b"keep" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert lock.is_symlink()
    assert run(store.load_raw()).tools.agent_timeout_secs == 601


def test_a_read_only_open_creates_no_queue_file(tmp_path):
    path = tmp_path / "ro.db"
    new_store(path).ledger.close()
    Path(f"{path}.lock").unlink()
    reader = SqliteConfigStore(path, read_only=True)
    assert run(reader.load_raw()).server.port == 13131
    reader.ledger.close()
    assert not Path(f"{path}.lock").exists()
