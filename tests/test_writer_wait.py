"""Writer processes (issue 16, figure 8): what a writer does while it waits for the
others (ledger.engine.write_wait), and one checkpoint cadence for all writers.

A writer waiting in the queue of writer processes catches up on what the writers ahead
of it commit, builds the typed view its edit starts from, and checks the head MAC they
left, before its turn, so that holding the lock it only has the events committed since.
Nothing of it decides what is written: a history changed under a waiting writer is
refused by its write as before. Another writer's checkpoint signature, once it checks,
counts for this writer's cadence too (one checkpoint per CHECKPOINT_EVERY events of the
ledger, not one per process); a forged one does not.

The other writer process is played, where a real queue wait is needed, by the test
holding the queue's lock through its own open file (as another process's writer would)
and by a second ledger on the same file that commits without the queue (another
durability setting, so it is not grouped with the waiting writer's commits)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import apsw

from ledger import SqliteConfigStore
from ledger.backends.sqlite import SqliteBackend
from ledger.core.chain import link
from ledger.engine.ledger import Ledger
from ledger.errors import VerificationError
from tests.test_write_queue import hold, increment, new_store, wait_until


def other_writer(path: Path) -> Ledger:
    """A second writer of the same file that commits without the queue (the test holds
    the queue's lock) and outside the waiting writer's commit group."""
    return Ledger(SqliteBackend(path, synchronous="NORMAL", write_queue=False))


def value(ledger: Ledger) -> int:
    return int(ledger.head_state().config["tools"]["agent_timeout_secs"])


def meta_row(path: Path, key: str) -> str | None:
    conn = apsw.Connection(str(path))
    try:
        row = conn.execute("SELECT value FROM ledger_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


def set_meta_row(path: Path, key: str, text: str) -> None:
    conn = apsw.Connection(str(path))
    try:
        conn.execute("UPDATE ledger_meta SET value = ? WHERE key = ?", (text, key))
    finally:
        conn.close()


class Waiting:
    """A write of `store` run in a thread while the test holds the queue's lock."""

    def __init__(self, store: SqliteConfigStore) -> None:
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._write, args=(store,))

    def _write(self, store: SqliteConfigStore) -> None:
        try:
            store.ledger.update_typed(increment, actor="waiter")
        except BaseException as err:
            self.errors.append(err)
        finally:
            self.done.set()


def test_a_waiting_writer_catches_up_before_its_turn(tmp_path):
    path = tmp_path / "w.db"
    store = new_store(path)
    waiter = store.ledger
    waiter.update_typed(increment, actor="warm")  # vouched, typed view built
    other = other_writer(path)
    first = value(other)
    fd = hold(path)
    try:
        for _ in range(3):  # while this writer was busy elsewhere
            other.update_typed(increment, actor="other")
        head = other.head_state()
        keys = other.vault.integrity()
        assert keys is not None
        write = Waiting(store)
        write.thread.start()
        # caught up while it waits for the lock: the events, its typed view and the
        # head MAC the other writer left
        wait_until(lambda: waiter._state is not None and waiter._state.seq == head.seq)
        assert not write.done.is_set()
        state = waiter._state
        assert state.hash == head.hash
        wait_until(lambda: waiter.voucher.knows((head.seq, head.hash), keys, None))
        view = waiter._view
        assert view is not None
        assert view.key is state
    finally:
        os.close(fd)  # the other writer's turn is over
    write.thread.join()
    assert not write.errors
    assert value(waiter) == first + 4
    assert waiter.head_state().seq == head.seq + 1
    report = waiter.verify()
    assert report.ok, report.problem
    other.close()
    store.ledger.close()


def test_a_history_changed_under_a_waiting_writer_is_refused_by_its_write(tmp_path, caplog):
    path = tmp_path / "w.db"
    store = new_store(path)
    other = other_writer(path)
    other.update_typed(increment, actor="other")
    head = other.head_state()
    fd = hold(path)
    try:
        # the next event arrives with its payload edited (its hashes are over another):
        # what a waiting writer reads before its turn, it must not take on trust
        rec = other.backend.record(head.seq)
        assert rec is not None
        seq, ts = head.seq + 1, rec.ts + 1
        hash_ = link(head.hash, seq, ts, "x", "", "api", "change", rec.payload)
        edited = rec.payload.replace(b"agent_timeout_secs", b"agent_timeout_secZ")
        conn = apsw.Connection(str(path))
        conn.execute("INSERT INTO ledger_events VALUES (?,?,?,?,?,?,?,?,?)",
                     (seq, ts, "x", "", "api", "change", edited, head.hash, hash_))
        conn.close()
        caplog.set_level(logging.DEBUG, logger="ledger.engine.write_wait")
        write = Waiting(store)
        write.thread.start()
        # its work while waiting met the edited event, and left it to the write
        wait_until(lambda: any("while waiting" in r.getMessage() for r in caplog.records))
        assert not write.done.is_set()
    finally:
        os.close(fd)
    write.thread.join()
    assert len(write.errors) == 1
    assert isinstance(write.errors[0], VerificationError), write.errors[0]
    assert other.backend.head().seq == head.seq + 1  # the waiting writer wrote nothing
    other.close()
