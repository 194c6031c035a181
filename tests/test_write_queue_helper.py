"""The queue of writer processes keeps one helper thread per connection (issue 16, i16g).

A writer that finds the queue's lock held waits for it in a helper thread (flock has no
timeout; the busy timeout bounds the wait). A new thread per wait costs a thread start
(and the starter's wait for it to run: milliseconds on a loaded machine) on every
contended update of every writer process; the helper now stays for the next wait, ends
once idle or closed, and a forked child starts its own (the parent's is not there).

Locks are held through real open files, as another process's writer would hold them;
real processes for the fork; nothing is timed (bounds below are safety nets)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ledger import SqliteConfigStore
from ledger.backends import write_queue
from tests.conftest import run
from tests.fork_child import run_forked

PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time
DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600}}


def increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def hold(path: Path) -> int:
    fd = os.open(f"{path}.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def helpers() -> set[threading.Thread]:
    return {t for t in threading.enumerate()
            if t.name == "ledger-write-queue" and t.is_alive()}


def wait_until(cond: Any) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not cond():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def contended_write(store: SqliteConfigStore, path: Path, before: set[threading.Thread]
                    ) -> set[threading.Thread]:
    """One update that has to wait in the queue; the helper threads it used."""
    fd = hold(path)
    done: list[Any] = []
    thread = threading.Thread(
        target=lambda: done.append(store.ledger.update_typed(increment, actor="w")))
    thread.start()
    wait_until(lambda: bool(helpers() - before))  # waiting in flock, through a helper
    used = helpers() - before
    os.close(fd)
    thread.join(PATIENCE_S)
    assert done and done[0].appended
    return used


def test_consecutive_waits_reuse_one_helper_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(write_queue, "IDLE_S", PATIENCE_S, raising=False)
    path = tmp_path / "h.db"
    store = SqliteConfigStore(path)
    run(store.save_raw(DOC, actor="setup", source="import"))
    before = helpers()
    first = contended_write(store, path, before)
    second = contended_write(store, path, before)
    third = contended_write(store, path, before)
    assert len(first) == 1 and first == second == third
    assert run(store.load_raw()).tools.agent_timeout_secs == 603
    store.ledger.close()
    # closing the store ends its helper (nothing keeps the queue or its file open)
    wait_until(lambda: not (first & helpers()))


def test_an_idle_helper_ends_by_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(write_queue, "IDLE_S", 0.05, raising=False)
    path = tmp_path / "i.db"
    store = SqliteConfigStore(path)
    run(store.save_raw(DOC, actor="setup", source="import"))
    before = helpers()
    used = contended_write(store, path, before)
    wait_until(lambda: not (used & helpers()))
    # and the next wait starts one again
    assert contended_write(store, path, before)
    assert run(store.load_raw()).tools.agent_timeout_secs == 602
    store.ledger.close()


SETUP = """
    import fcntl, os, sys, threading, time
    from ledger import SqliteConfigStore
    from ledger.backends import write_queue

    write_queue.IDLE_S = 60.0  # the parent's helper is alive (and idle) at the fork
    path = sys.argv[1]

    def inc(c):
        c.tools.agent_timeout_secs += 1

    def contended(store):
        fd = os.open(path + ".lock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t = threading.Thread(target=lambda: store.ledger.update_typed(inc, actor="w"))
        t.start()
        while not any(x.name == "ledger-write-queue" and x.is_alive()
                      for x in threading.enumerate()):
            time.sleep(0.001)
        os.close(fd)
        t.join()

    store = SqliteConfigStore(path, busy_timeout=20)
    contended(store)
"""
CHILD = """
    contended(store)
    store.ledger.close()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_waits_in_the_queue_with_a_helper_of_its_own(tmp_path):
    path = tmp_path / "f.db"
    store = SqliteConfigStore(path)
    run(store.save_raw(DOC, actor="setup", source="import"))
    store.ledger.close()
    run_forked(SETUP, CHILD, str(path))
    check = SqliteConfigStore(path)
    assert run(check.load_raw()).tools.agent_timeout_secs == 602
    assert check.ledger.verify().ok
    check.ledger.close()
