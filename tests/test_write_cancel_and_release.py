"""Round-3 review of the async write path (`ledger.stores.writer`, `contract.run_write`):
a store dropped without `close()` must release its writer thread; a task cancelled after
its write was taken must be told what happened to it (committed at seq N, refused, or
nothing changed), late in the writer thread's hand-over and on PostgreSQL alike.

Real SQLite files, a real PostgreSQL server (when LEDGER_TEST_PG_URL is set), real
threads and event loops; nothing is timed: `PATIENCE_S` only stops a hung test."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ledger import SqliteConfigStore
from tests.conftest import run

PATIENCE_S = 60.0  # a safety net against a hung test, never a measured time


def _bump(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def _seed(store: Any) -> Any:
    run(store.save_raw({"tools": {"agent_timeout_secs": 0}}, actor="setup"))
    return store


def _wait_for(pred: Any) -> None:
    for _ in range(int(PATIENCE_S * 1000)):
        if pred():
            return
        time.sleep(0.001)
    raise AssertionError("gave up waiting (a hung test, not a timing assertion)")


def _threads_started_end(before: set[threading.Thread]) -> list[str]:
    """Join every thread started since `before` (one shared safety net in all: a thread
    that never ends is the failure, not how long anything took)."""
    stop = time.monotonic() + PATIENCE_S
    for t in set(threading.enumerate()) - before:
        t.join(max(0.0, stop - time.monotonic()))
    return [t.name for t in set(threading.enumerate()) - before if t.is_alive()]


def test_a_forgotten_store_releases_its_writer_thread(tmp_path: Path) -> None:
    """Stores written through the writer thread (alone, then in groups of several
    stores) and dropped without close(): the module promises that a garbage-collected
    store releases its writer thread. Before, the thread's `_main` frame kept the last
    group's jobs (`_Job.owner` the store, `_Job.call` a closure over it) while waiting,
    so no store was ever collected and the thread, the store and its SQLite connection
    lived as long as the process."""
    before = set(threading.enumerate())
    dbs = [tmp_path / f"f{i}.db" for i in range(2)]
    for db in dbs:
        st = _seed(SqliteConfigStore(db))
        run(st.close())

    async def cycle(i: int) -> None:
        st = SqliteConfigStore(dbs[i % len(dbs)])
        await st.update_raw(_bump, reason=f"a{i}")
        st.ledger.update_typed(_bump, reason=f"s{i}")  # the sync API groups with it

    async def main() -> None:
        for i in range(4):
            await cycle(i)
        await asyncio.gather(*[cycle(i) for i in range(4, 16)])

    run(main())
    gc.collect()
    left = _threads_started_end(before)
    assert not left, left
    for db in dbs:  # every acknowledged write is there
        st = SqliteConfigStore(db)
        assert st.ledger.verify().ok
        assert run(st.load_raw()).tools.agent_timeout_secs == 16
        run(st.close())


def test_a_forgotten_store_is_collected_while_its_writer_serves_another(
        tmp_path: Path) -> None:
    """The writer thread outlives one forgotten store (another store of the same
    database keeps it): the forgotten store itself must still be collectable, not kept
    by the job the thread ran last."""
    import weakref

    db = tmp_path / "k.db"
    keeper = _seed(SqliteConfigStore(db))
    forgotten = SqliteConfigStore(db)
    run(forgotten.update_raw(_bump, reason="forgotten"))
    gone = weakref.ref(forgotten)
    del forgotten
    gc.collect()
    assert gone() is None
    run(keeper.update_raw(_bump, reason="keeper"))  # the writer still serves the keeper
    assert run(keeper.load_raw()).tools.agent_timeout_secs == 2
    run(keeper.close())


def test_cancel_after_the_outcome_arrived_still_says_the_write_committed(
        tmp_path: Path) -> None:
    """A task cancelled after the writer thread handed back its outcome (the commit is
    durable) but before the task resumed got a bare CancelledError: the caller was not
    told that the write was committed (a retry applies it twice). Deterministic: a loop
    callback blocks the loop until the writer thread has queued the outcome on it, then
    cancels the task (the outcome's callback runs first, then the task wakes up
    cancelled)."""
    from ledger.stores import writer as writer_module

    st = _seed(SqliteConfigStore(tmp_path / "c.db"))

    async def main() -> str:
        await st.update_raw(_bump, reason="warm")  # the writer thread exists
        loop = asyncio.get_running_loop()
        task = loop.create_task(st.update_raw(_bump, reason="cancelled-late"))

        def block_then_cancel() -> None:
            _wait_for(lambda: any(getattr(h, "_callback", None) is writer_module._resolve
                                  for h in list(loop._ready)))  # type: ignore[attr-defined]
            task.cancel()

        loop.call_soon(block_then_cancel)
        try:
            await task
        except asyncio.CancelledError as err:
            return str(err)
        return "not cancelled"

    told = run(main())
    events = {e.reason: e.seq for e in st.ledger.events()}
    run(st.close())
    assert "cancelled-late" in events  # the write is durable ...
    # ... and the caller is told so, with the seq to confirm it by
    assert told == f"cancelled after the write was committed (seq {events['cancelled-late']})"


@pytest.mark.postgres
def test_postgres_cancelled_write_tells_the_caller_what_happened(pg_url: str) -> None:
    """The PostgreSQL store runs each write in a worker thread (`run_write`): a task
    cancelled while its write ran got a bare CancelledError at once, and the write then
    committed anyway in the worker thread, the caller never told. Now it waits for the
    outcome and says "committed (seq N)", as the SQLite/memory writer thread does."""
    from tests.pg import fresh_pg_store

    st = _seed(fresh_pg_store(pg_url))
    entered, release = threading.Event(), threading.Event()

    def hold(cfg: Any) -> None:
        entered.set()
        assert release.wait(PATIENCE_S)
        cfg.tools.agent_timeout_secs += 1

    async def main() -> tuple[str, bool]:
        task = asyncio.get_running_loop().create_task(st.update_raw(hold, reason="held"))
        while not entered.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0)  # the task takes the cancellation while its write runs
        waited = not task.done()  # it does not give up on a write that is running
        release.set()
        try:
            await task
        except asyncio.CancelledError as err:
            return str(err), waited
        return "completed", waited

    told, waited = run(main())
    events = {e.reason: e.seq for e in st.ledger.events()}
    run(st.close())
    assert "held" in events
    assert waited
    assert told == f"cancelled after the write was committed (seq {events['held']})"


@pytest.mark.postgres
def test_postgres_cancelled_refused_write_says_nothing_was_written(pg_url: str) -> None:
    """The same on PostgreSQL when the write is refused (its `fn` raises) after the
    cancellation: the caller learns that nothing was written, and why."""
    from tests.pg import fresh_pg_store

    st = _seed(fresh_pg_store(pg_url))
    entered, release = threading.Event(), threading.Event()

    def refuse(cfg: Any) -> None:
        entered.set()
        assert release.wait(PATIENCE_S)
        raise ValueError("the caller's fn refuses")

    async def main() -> str:
        task = asyncio.get_running_loop().create_task(st.update_raw(refuse, reason="no"))
        while not entered.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0)
        release.set()
        try:
            await task
        except asyncio.CancelledError as err:
            return str(err)
        return "completed"

    told = run(main())
    reasons = [e.reason for e in st.ledger.events()]
    run(st.close())
    assert "no" not in reasons
    assert told.startswith("cancelled; the write was refused and nothing was written"), told
    assert "the caller's fn refuses" in told


def test_a_worker_thread_write_cancelled_before_it_started_is_withdrawn(
        tmp_path: Path) -> None:
    """`run_write` (the file and PostgreSQL stores): a write still queued for a worker
    thread when its task is cancelled is withdrawn: nothing is written and the task gets
    a plain CancelledError. Deterministic: the loop's executor has one thread, held busy
    by another job until the write's task was cancelled."""
    from concurrent.futures import ThreadPoolExecutor

    from ledger.stores.file_store import FileConfigStore

    path = tmp_path / "moltis.toml"
    path.write_text("[tools]\nagent_timeout_secs = 0\n")
    st = FileConfigStore(path)
    busy, release = threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        assert release.wait(PATIENCE_S)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1)
        loop.set_default_executor(pool)
        blocker = loop.run_in_executor(None, occupy)
        while not busy.is_set():
            await asyncio.sleep(0.001)
        task = loop.create_task(st.update_raw(_bump, reason="withdrawn"))
        for _ in range(10):  # the task queues its write behind `occupy`
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as err:
            told = str(err)
        else:
            told = "completed"
        release.set()
        await blocker
        await loop.run_in_executor(None, lambda: None)  # the withdrawn job ran (and quit)
        return told

    told = run(main())
    assert told == ""  # withdrawn: nothing to tell
    assert run(FileConfigStore(path).load_raw()).tools.agent_timeout_secs == 0
