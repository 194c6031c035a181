"""One SQLite connection shared by the threads of a process (issue 16).

apsw refuses a call on a connection while another thread's call on it is running
("Connection is busy in another thread"). Every use of the backend's connection must
therefore run under its lock, reads streamed to a caller included: a read of the log
(history, verify, replay) running while a write of another thread commits on the same
store must neither fail nor make the write fail."""

from __future__ import annotations

import threading
from typing import Any

from ledger import SqliteConfigStore
from tests.conftest import run

DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600}}
PATIENCE_S = 60.0  # a safety net against a hung test, never a measured time
WRITES = 150


def increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def test_reading_the_log_while_another_thread_writes_on_the_same_connection(tmp_path):
    store = SqliteConfigStore(tmp_path / "t.db")
    run(store.save_raw(DOC, actor="setup", source="import"))
    ledger = store.ledger
    for _ in range(50):  # a log of several chunks' worth of statements to step through
        ledger.update_typed(increment, actor="setup")
    errors: list[BaseException] = []
    reads = [0]
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set() or reads[0] < 3:
                events = list(ledger.events())
                assert [e.seq for e in events] == list(range(1, len(events) + 1))
                assert ledger.verify_chain().ok
                newest = list(ledger.events(descending=True, limit=5))
                assert newest[0].seq >= events[-1].seq
                reads[0] += 1
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(WRITES):
            ledger.update_typed(increment, actor="writer")
    finally:
        done.set()
        thread.join(PATIENCE_S)
    assert not errors, errors
    assert reads[0] >= 3
    assert run(store.load_raw()).tools.agent_timeout_secs == 600 + 50 + WRITES
    report = ledger.verify()
    assert report.ok and report.events == 1 + 50 + WRITES


def test_events_stream_in_chunks_in_both_directions(tmp_path):
    from ledger.backends import sqlite

    store = SqliteConfigStore(tmp_path / "c.db")
    run(store.save_raw(DOC, actor="setup", source="import"))
    ledger = store.ledger
    for _ in range(9):
        ledger.update_typed(increment, actor="setup")
    backend = ledger.backend
    old = sqlite._CHUNK
    sqlite._CHUNK = 3  # chunk edges fall inside every range below
    try:
        assert [r.seq for r in backend.read()] == list(range(1, 11))
        assert [r.seq for r in backend.read(2, 9)] == list(range(3, 10))
        assert [r.seq for r in backend.read(descending=True)] == list(range(10, 0, -1))
        assert [r.seq for r in backend.read(1, 8, descending=True, limit=4)] == [8, 7, 6, 5]
        assert [r.seq for r in backend.read(limit=6)] == list(range(1, 7))
        assert [r[0] for r in backend.read_rows(4)] == list(range(5, 11))
        assert ledger.replay() == ledger.head_state()
    finally:
        sqlite._CHUNK = old
