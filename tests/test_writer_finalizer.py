"""A store the garbage collector drops never deadlocks the process: its finalizer runs
in whatever thread allocated at that moment, for example a thread being started while
another thread holds the writer registry's lock and waits for that start. A finalizer
that waited for the lock hung a whole test run (189 threads, all waiting). Now it
queues the release, which the lock's holder, the next store, or the idle writer
thread does.

Real threads and a real SQLite file; nothing is timed (PATIENCE_S is a safety net)."""

from __future__ import annotations

import gc
import threading
import time

from ledger import SqliteConfigStore
from ledger.stores import writer as writer_module
from tests.conftest import run

PATIENCE_S = 30.0


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "moltis-ledger-writer"]


def test_a_collected_store_never_waits_for_a_lock_another_thread_holds(tmp_path):
    before = set(_writer_threads())

    gone = threading.Event()

    def collected_store_holding_lock_elsewhere() -> None:
        store = SqliteConfigStore(tmp_path / "g.db")
        run(store.update_raw(lambda c: setattr(c.server, "port", 1002), actor="t"))
        ready.set()
        proceed.wait(PATIENCE_S)
        del store
        gc.collect()  # finalizer, while the main thread holds the registry lock
        gone.set()

    ready, proceed = threading.Event(), threading.Event()
    dropper = threading.Thread(target=collected_store_holding_lock_elsewhere)
    dropper.start()
    assert ready.wait(PATIENCE_S)
    with writer_module._registry_lock:
        proceed.set()
        assert gone.wait(PATIENCE_S), "the finalizer waited for the registry lock"
    dropper.join(PATIENCE_S)
    # released later (by the idle writer thread): no thread of these stores is left
    deadline = time.monotonic() + PATIENCE_S
    while set(_writer_threads()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_writer_threads()) - before
    assert not writer_module._collected
