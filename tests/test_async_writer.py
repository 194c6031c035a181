"""The async stores' writer thread (`ledger.stores.writer`, issue 16's event-loop lag):
every async write of a process on one database runs in one dedicated thread, never in
the loop's default executor, with each caller's own outcome, context and conflict
check; cancellation never half-applies a write; closing drains and joins the thread.

Real SQLite files, real threads, a real event loop; nothing is timed: the tests hold
the writer inside a caller's `fn` with threading events to fix the interleaving."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from ledger import MemoryConfigStore, SqliteConfigStore, acting_as
from ledger.errors import ConflictError, InputError
from tests.conftest import run

DOC = {"server": {"port": 1000}}
TASKS = 8
EACH = 25
PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time


def _store(tmp_path: Any, name: str = "w.db") -> SqliteConfigStore:
    store = SqliteConfigStore(tmp_path / name)
    run(store.save_raw(DOC, actor="setup"))
    return store


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "moltis-ledger-writer"]


def test_a_burst_of_async_writes_runs_in_one_thread_off_the_loop(tmp_path):
    """The default executor put each waiting write in a thread of its own (up to six
    competing with the loop for the GIL); now every write of the burst runs in the
    same single thread, never the loop's, and no executor thread is started."""
    store = _store(tmp_path)
    ran_in: set[int] = set()

    def bump(cfg: Any) -> None:
        ran_in.add(threading.get_ident())
        cfg.server.port += 1

    async def main() -> tuple[int, bool]:
        loop_thread = threading.get_ident()

        async def client() -> None:
            for _ in range(EACH):
                await store.update_raw(bump, actor="gw")

        await asyncio.gather(*[client() for _ in range(TASKS)])
        executor_used = getattr(asyncio.get_running_loop(), "_default_executor", None)
        return loop_thread, executor_used is not None

    loop_thread, executor_used = run(main())
    assert len(ran_in) == 1 and loop_thread not in ran_in
    assert not executor_used
    assert run(store.load_raw()).server.port == 1000 + TASKS * EACH
    assert store.ledger.verify().ok
    run(store.close())


def test_writes_queued_during_a_commit_share_one_group_each_with_its_own_outcome(tmp_path):
    """While the writer is held inside one caller's fn, the others queue; they are then
    committed together (one transaction) yet each gets its own seq, its own conflict
    check and its own failure."""
    store = _store(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def hold(cfg: Any) -> None:
        entered.set()
        assert release.wait(PATIENCE_S)
        cfg.server.port = 2000

    def boom(cfg: Any) -> None:
        raise ValueError("only this caller's write fails")

    def port(n: int) -> Any:
        def set_port(cfg: Any) -> None:
            cfg.server.port = n
        return set_port

    async def main() -> list[Any]:
        first = asyncio.ensure_future(store.update_raw(hold, actor="a"))
        while not entered.is_set():
            await asyncio.sleep(0)
        head = 1  # the setup's event; the held write is not committed yet
        others = [
            asyncio.ensure_future(store.update_raw(port(3001), actor="b")),
            asyncio.ensure_future(store.update_raw(boom, actor="c")),
            asyncio.ensure_future(store.update_raw(port(3003), actor="d",
                                                   expected_seq=head)),  # stale: conflict
            asyncio.ensure_future(store.update_raw(port(3004), actor="e")),
        ]
        await asyncio.sleep(0)  # let them queue behind the held write
        release.set()
        return await asyncio.gather(first, *others, return_exceptions=True)

    first, b, c, d, e = run(main())
    assert first.seq == 2
    assert isinstance(c, ValueError)
    assert isinstance(d, ConflictError)
    assert {b.seq, e.seq} == {3, 4}
    events = run(store.history())
    assert [(ev.seq, ev.actor) for ev in reversed(events)][-3:] == sorted(
        [(2, "a"), (b.seq, "b"), (e.seq, "e")])
    assert store.ledger.verify().ok
    run(store.close())


def test_each_task_s_context_reaches_its_write(tmp_path):
    """`acting_as` set in a task attributes that task's writes, although one thread
    builds the events of several tasks in one group."""
    store = _store(tmp_path)

    async def as_actor(n: int) -> list[int]:
        seqs = []
        with acting_as(f"svc-{n}"):
            for i in range(EACH):
                commit = await store.apply_changes(_set(("server", "port"), n * 100 + i + 1))
                assert commit.appended
                seqs.append(commit.seq)
        return seqs

    async def main() -> list[list[int]]:
        return await asyncio.gather(*[as_actor(n) for n in range(4)])

    per_actor = run(main())
    actors = {ev.seq: ev.actor for ev in run(store.history())}
    for n, seqs in enumerate(per_actor):
        assert {actors[s] for s in seqs} == {f"svc-{n}"}
    run(store.close())


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def test_fn_runs_in_its_own_task_s_context(tmp_path):
    """`fn` of update_raw sees the contextvars of the task that asked, even when the
    writer thread runs it while committing another task's group."""
    store = _store(tmp_path)
    seen: dict[int, str] = {}

    async def request(n: int) -> None:
        REQUEST_ID.set(f"req-{n}")

        def record(cfg: Any) -> None:
            seen[n] = REQUEST_ID.get()
            cfg.server.port = 5000 + n

        await store.update_raw(record, actor="gw")

    async def main() -> None:
        await asyncio.gather(*[request(n) for n in range(TASKS)])

    run(main())
    assert seen == {n: f"req-{n}" for n in range(TASKS)}
    run(store.close())


def _set(path: tuple[str, ...], value: Any) -> list[Any]:
    from ledger.typed.convert import RawChange

    return [RawChange("set", path, value)]


def test_cancelling_a_queued_write_withdraws_it(tmp_path):
    store = _store(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def hold(cfg: Any) -> None:
        entered.set()
        assert release.wait(PATIENCE_S)
        cfg.server.port = 2000

    def never(cfg: Any) -> None:
        cfg.server.port = 9999

    async def main() -> tuple[Any, bool]:
        first = asyncio.ensure_future(store.update_raw(hold, actor="a"))
        while not entered.is_set():
            await asyncio.sleep(0)
        queued = asyncio.ensure_future(store.update_raw(never, actor="b"))
        await asyncio.sleep(0)  # queued behind the held write, not taken
        queued.cancel()
        try:
            await queued
        except asyncio.CancelledError:
            cancelled = True
        else:
            cancelled = False
        release.set()
        return await first, cancelled

    first, cancelled = run(main())
    assert cancelled
    assert first.seq == 2 and run(store.head_seq()) == 2
    assert run(store.load_raw()).server.port == 2000
    run(store.close())


def test_cancelling_a_taken_write_completes_it_and_says_so(tmp_path):
    store = _store(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def hold(cfg: Any) -> None:
        entered.set()
        assert release.wait(PATIENCE_S)
        cfg.server.port = 2000

    async def main() -> str:
        write = asyncio.ensure_future(store.update_raw(hold, actor="a"))
        while not entered.is_set():
            await asyncio.sleep(0)
        write.cancel()  # the writer is inside its fn: too late to withdraw it
        await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError) as caught:
            await write
        return str(caught.value)

    told = run(main())
    assert "committed (seq 2)" in told
    assert run(store.head_seq()) == 2 and run(store.load_raw()).server.port == 2000
    assert store.ledger.verify().ok
    run(store.close())


def test_close_finishes_queued_writes_and_joins_the_thread(tmp_path):
    store = _store(tmp_path)
    path = store.path
    ran_in: set[threading.Thread] = set()

    def bump(cfg: Any) -> None:
        ran_in.add(threading.current_thread())
        cfg.server.port += 1

    async def main() -> list[Any]:
        writes = [asyncio.ensure_future(store.update_raw(bump, actor="gw")) for _ in range(10)]
        await asyncio.sleep(0)  # all accepted (queued) before the close
        await store.close()
        return await asyncio.gather(*writes)

    commits = run(main())
    assert sorted(c.seq for c in commits) == list(range(2, 12))
    # this store's own writer thread, not a count of all of them: other tests' stores
    # are released when collected, so their threads may end during this test
    (writer,) = ran_in
    assert writer.name == "moltis-ledger-writer" and not writer.is_alive()
    with pytest.raises(InputError, match="closed"):
        run(store.update_raw(bump, actor="gw"))
    again = SqliteConfigStore(path)
    assert run(again.load_raw()).server.port == 1010
    assert again.ledger.verify().ok
    run(again.close())


def test_closing_one_of_two_stores_on_a_file_waits_for_its_own_writes(tmp_path):
    """The writer thread outlives the closed store (the other keeps it), so close()
    waits for the closing store's queued writes before its connection closes."""
    a = _store(tmp_path)
    b = SqliteConfigStore(a.path)

    def bump(cfg: Any) -> None:
        cfg.server.port += 1

    async def main() -> list[Any]:
        await b.update_raw(bump, actor="b")  # b holds the writer too
        writes = [asyncio.ensure_future(a.update_raw(bump, actor="a")) for _ in range(10)]
        await asyncio.sleep(0)
        await a.close()
        done = await asyncio.gather(*writes)
        done.append(await b.update_raw(bump, actor="b"))
        return done

    commits = run(main())
    assert all(c.appended for c in commits)
    assert run(b.load_raw()).server.port == 1012
    assert b.ledger.verify().ok
    run(b.close())


def test_stores_share_one_writer_per_database_and_closing_leaks_no_thread(tmp_path):
    # threads of other tests' stores (closed when collected) may come and go meanwhile:
    # only the threads that appear during this test are counted
    before = set(_writer_threads())
    for round_ in range(3):
        stores = [SqliteConfigStore(tmp_path / f"db{round_}.db") for _ in range(4)]
        stores.append(MemoryConfigStore())

        async def main(stores: list[Any] = stores) -> list[threading.Thread]:
            await asyncio.gather(*[s.save_raw(DOC, actor="t") for s in stores])
            return [t for t in _writer_threads() if t not in before]

        started = run(main())
        # four stores on one file: one writer; the memory store: another
        assert len(started) == 2
        for s in stores:
            run(s.close())
        assert not any(t.is_alive() for t in started)


def test_sync_threads_and_async_tasks_group_together_without_lost_updates(tmp_path):
    store = _store(tmp_path)

    def bump(cfg: Any) -> None:
        cfg.server.port += 1

    def sync_writer() -> None:
        for _ in range(EACH):
            store.ledger.update_typed(bump, actor="thread")

    threads = [threading.Thread(target=sync_writer) for _ in range(3)]

    async def main() -> None:
        async def client() -> None:
            for _ in range(EACH):
                await store.update_raw(bump, actor="task")

        for t in threads:
            t.start()
        await asyncio.gather(*[client() for _ in range(4)])

    run(main())
    for t in threads:
        t.join()
    assert run(store.load_raw()).server.port == 1000 + 7 * EACH
    assert store.ledger.verify().ok
    run(store.close())
