"""Writer processes (issue 16, figure 8): what a writer does while it waits for the
others (ledger.engine.write_wait), and one checkpoint cadence for all writers.

A writer that has to wait in the queue of writer processes first catches up on what
the other writers committed since its last write, builds the typed view its edit
starts from, and checks the head MAC they left, so that holding the lock it only has
the events committed since. Nothing of it decides what is written: a history changed
under a waiting writer is refused by its write as before. A checkpoint signature
another writer made on the very head a write appends onto, once it checks, counts for
this writer's cadence too (one checkpoint per CHECKPOINT_EVERY events of the ledger,
not one per process); a forged one does not.

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
from ledger.backends.base import HEAD_SIGNATURE
from ledger.backends.sqlite import SqliteBackend
from ledger.core.chain import link
from ledger.engine.integrity_keys import HeadSignature
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


def signature_seq(path: Path) -> int | None:
    text = meta_row(path, HEAD_SIGNATURE)
    return None if text is None else HeadSignature.decode(text).seq


def checkpoint_at_nine(path: Path) -> tuple[SqliteConfigStore, Ledger]:
    """Two writers of one ledger, checkpoints every 8 events: the first signs event 1
    (its first append), the second event 2 (its first append), the first event 9.
    By its own count the second's next checkpoint is event 10, its next append."""
    first = new_store(path)
    second = other_writer(path)
    for ledger in (first.ledger, second):
        ledger.voucher.every, ledger.voucher.secs = 8, 3600.0
    second.update_typed(increment, actor="second")
    assert signature_seq(path) == 2
    for _ in range(7):
        first.ledger.update_typed(increment, actor="first")
    assert signature_seq(path) == 9
    return first, second


def test_another_writers_checkpoint_counts_for_this_writers_cadence(tmp_path):
    path = tmp_path / "w.db"
    first, second = checkpoint_at_nine(path)
    second.update_typed(increment, actor="second")  # event 10, onto the checkpoint
    assert signature_seq(path) == 9  # not another checkpoint one event after the last
    for _ in range(7):
        second.update_typed(increment, actor="second")
    assert signature_seq(path) == 17  # eight events after the first writer's
    report = second.verify()
    assert report.ok, report.problem
    second.close()
    first.ledger.close()


def test_a_forged_checkpoint_signature_holds_no_writer_back(tmp_path):
    path = tmp_path / "w.db"
    first, second = checkpoint_at_nine(path)
    text = meta_row(path, HEAD_SIGNATURE)
    assert text is not None
    # the row as someone without the key would leave it: a signature that does not
    # check (its last byte changed), for the same event
    sig = HeadSignature.decode(text)
    bad = sig.signature[:-1] + bytes([sig.signature[-1] ^ 1])
    set_meta_row(path, HEAD_SIGNATURE,
                 HeadSignature(sig.seq, sig.hash, sig.public, bad, sig.version).encode())
    second.update_typed(increment, actor="second")
    # not taken for a checkpoint: event 10 is one, as without the forged row
    assert signature_seq(path) == 10
    second.close()
    first.ledger.close()


def test_writers_taking_turns_make_one_checkpoint_per_window(tmp_path):
    path = tmp_path / "w.db"
    every = 8
    a = new_store(path).ledger
    b = other_writer(path)
    for ledger in (a, b):
        ledger.voucher.every, ledger.voucher.secs = every, 3600.0
    seen: list[str | None] = []
    events = 0
    for turn in range(12 * every):
        (a, b)[turn % 2].update_typed(increment, actor=f"w{turn % 2}")
        events += 1
        text = meta_row(path, HEAD_SIGNATURE)
        if text not in seen:
            seen.append(text)
    # one checkpoint per `every` events of the ledger (plus each process's first
    # append); a cadence per process makes about twice as many
    assert len(seen) <= events // every + 2
    report = a.verify()
    assert report.ok, report.problem
    a.close()
    b.close()
