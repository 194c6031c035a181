"""Group commit (issue 16): concurrent writers of one process share one transaction and
one fsync, each with its own event, seq, hash link, conflict check and outcome.

Groups are formed deterministically here, never by timing: the first writer's `fn`
runs inside its transaction and waits until the others are queued behind it, so they
form the next group. Commits are counted with SQLite's own commit hook on the
ledger's connection (the real database, instrumented, not replaced)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from ledger import ConfigValidationError, ConflictError, SqliteConfigStore
from ledger.engine.ledger import Commit, Ledger
from tests.conftest import run

DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600}}
PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time


def new_store(path: Path) -> SqliteConfigStore:
    store = SqliteConfigStore(path)
    run(store.save_raw(DOC, actor="setup", source="import"))
    return store


def count_commits(ledger: Ledger) -> list[int]:
    """Commits made on this ledger's connection, counted by SQLite's commit hook."""
    commits = [0]

    def hook() -> bool:
        commits[0] += 1
        return False  # let the commit go on

    ledger.backend._conn.set_commit_hook(hook)  # type: ignore[attr-defined]
    return commits


def queued(ledger: Ledger) -> int:
    committer = ledger._committer
    assert committer is not None
    with committer._cond:
        return len(committer._queue)


def wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("the writers never queued")
        time.sleep(0.001)


def increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


class Outcome:
    def __init__(self) -> None:
        self.commit: Commit | None = None
        self.error: BaseException | None = None
        self.visible_to_others: bool | None = None


def in_thread(ledger: Ledger, fn: Callable[[Any], Any], path: Path, **kw: Any
              ) -> tuple[threading.Thread, Outcome]:
    out = Outcome()

    def body() -> None:
        try:
            out.commit = ledger.update_typed(fn, actor="t", **kw)
        except BaseException as err:
            out.error = err
            return
        # acknowledged only after its commit: another connection sees the event at once
        other = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            row = other.execute("SELECT count(*) FROM ledger_events WHERE seq = ?",
                                (out.commit.seq,)).fetchone()
        finally:
            other.close()
        out.visible_to_others = out.commit.appended and row[0] == 1

    thread = threading.Thread(target=body)
    thread.start()
    return thread, out


def grouped(ledger: Ledger, path: Path, fns: list[tuple[Callable[[Any], Any], dict[str, Any]]]
            ) -> tuple[list[Outcome], int]:
    """Run a blocker, then `fns` queued behind it (one group); returns their outcomes
    and how many commits the group took."""
    release, entered = threading.Event(), threading.Event()

    def blocker(cfg: Any) -> None:
        cfg.server.port = 14000
        entered.set()
        assert release.wait(PATIENCE_S)

    first, first_out = in_thread(ledger, blocker, path)
    # The blocker is in its `fn` from here until released: inside its transaction, but
    # in no call on the connection, so the commit hook can be set on it (apsw refuses
    # a call while another thread's call on the same connection is running).
    assert entered.wait(PATIENCE_S)
    threads = []
    outs = []
    for fn, kw in fns:
        t, o = in_thread(ledger, fn, path, **kw)
        threads.append(t)
        outs.append(o)
    wait_until(lambda: queued(ledger) == len(fns))
    commits = count_commits(ledger)
    release.set()
    first.join(PATIENCE_S)
    assert first_out.error is None and first_out.visible_to_others
    for t in threads:
        t.join(PATIENCE_S)
    return outs, commits[0] - 1  # the blocker's own commit was the first one counted


def test_queued_writers_commit_in_one_transaction_each_with_its_own_event(tmp_path):
    path = tmp_path / "g.db"
    store = new_store(path)
    ledger = store.ledger
    head = ledger.head_state().seq
    outs, group_commits = grouped(ledger, path, [(increment, {}) for _ in range(4)])
    assert group_commits == 1  # four events, one transaction (one fsync)
    seqs = sorted(o.commit.seq for o in outs if o.commit is not None)
    assert seqs == [head + 2, head + 3, head + 4, head + 5]
    assert all(o.error is None and o.visible_to_others for o in outs)
    assert run(store.load_raw()).tools.agent_timeout_secs == 604
    report = ledger.verify()
    assert report.ok and report.events == head + 5
    # each event is its own hash link on the one before
    records = list(ledger.backend.read(after=head))
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]


def test_a_failing_fn_or_invalid_value_affects_only_its_caller(tmp_path):
    path = tmp_path / "g.db"
    store = new_store(path)
    ledger = store.ledger

    def boom(cfg: Any) -> None:
        cfg.tools.agent_timeout_secs = 1  # changed, then the caller fails
        raise RuntimeError("the caller's own bug")

    def invalid(cfg: Any) -> None:
        cfg.server.port = "not a port"

    def later(cfg: Any) -> None:  # after the failures, in the same group
        cfg.server.port = 15000

    outs, group_commits = grouped(ledger, path, [(increment, {}), (boom, {}),
                                                 (invalid, {}), (later, {})])
    assert group_commits == 1
    ok, failed, bad, last = outs
    assert ok.error is None and ok.visible_to_others
    assert isinstance(failed.error, RuntimeError) and failed.commit is None
    assert isinstance(bad.error, ConfigValidationError) and "server.port" in str(bad.error)
    assert last.error is None and last.visible_to_others
    assert last.commit is not None and ok.commit is not None
    assert last.commit.seq == ok.commit.seq + 1  # no hole where the failures were
    cfg = run(store.load_raw())
    assert cfg.tools.agent_timeout_secs == 601 and cfg.server.port == 15000
    assert ledger.verify().ok
    assert ledger.replay() == ledger.head_state()


def test_each_event_of_a_group_gets_its_own_conflict_check(tmp_path):
    path = tmp_path / "g.db"
    store = new_store(path)
    ledger = store.ledger
    seen = ledger.head_state().seq + 1  # the head once the blocker has committed
    outs, group_commits = grouped(ledger, path, [(increment, {"expected_seq": seen}),
                                                 (increment, {"expected_seq": seen})])
    assert group_commits == 1
    first, second = outs
    assert first.error is None and first.commit is not None and first.commit.seq == seen + 1
    assert isinstance(second.error, ConflictError)
    assert ledger.verify().ok


def test_threads_sharing_one_store_lose_nothing(tmp_path):
    path = tmp_path / "g.db"
    store = new_store(path)
    ledger = store.ledger
    threads, each = 8, 25
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(each):
                ledger.update_typed(increment, actor="thread")
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(PATIENCE_S * 4)
    assert not errors
    assert run(store.load_raw()).tools.agent_timeout_secs == 600 + threads * each
    report = ledger.verify()
    assert report.ok and report.events == 1 + threads * each


def test_several_stores_on_one_file_in_one_process_lose_nothing(tmp_path):
    path = tmp_path / "g.db"
    new_store(path).ledger.close()
    stores = [SqliteConfigStore(path) for _ in range(6)]
    assert len({id(s.ledger._committer) for s in stores}) == 1  # one group for the file
    each = 15
    errors: list[BaseException] = []

    def writer(store: SqliteConfigStore) -> None:
        try:
            for _ in range(each):
                store.ledger.update_typed(increment, actor="store")
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=writer, args=(s,)) for s in stores]
    for w in workers:
        w.start()
    for w in workers:
        w.join(PATIENCE_S * 4)
    assert not errors
    for store in stores:  # every store sees every write
        assert run(store.load_raw()).tools.agent_timeout_secs == 600 + len(stores) * each
    report = stores[0].ledger.verify()
    assert report.ok and report.events == 1 + len(stores) * each
    assert stores[0].ledger.replay() == stores[-1].ledger.head_state()


def test_async_tasks_lose_nothing(tmp_path):
    path = tmp_path / "g.db"
    store = new_store(path)

    async def burst() -> list[Commit]:
        return await asyncio.gather(*[store.update_raw(increment, actor="task")
                                      for _ in range(40)])

    commits = run(burst())
    assert sorted(c.seq for c in commits) == list(range(2, 42))
    assert run(store.load_raw()).tools.agent_timeout_secs == 640
    assert store.ledger.verify().ok


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_lone_writer_commits_alone(tmp_path, kind):
    from ledger import MemoryConfigStore

    store = MemoryConfigStore() if kind == "memory" else SqliteConfigStore(tmp_path / "a.db")
    run(store.save_raw(DOC, actor="setup"))
    commit = run(store.update_raw(increment, actor="me"))
    assert commit.appended and commit.seq == 2
    assert store.ledger.verify().ok


def test_a_group_signs_its_last_stored_event_once(tmp_path, monkeypatch):
    """At most one Ed25519 signature (and one head MAC) per group, not one per event,
    over the group's last stored event, even when a later request of the group
    failed; a pinned verify accepts it. (Checkpoints every transaction here, so that
    the group's signature is due.)"""
    from ledger.engine.integrity_keys import IntegrityKeys

    path = tmp_path / "g.db"
    store = new_store(path)
    ledger = store.ledger
    ledger.voucher.every = 1
    real_sign, real_mac = IntegrityKeys.sign_head, IntegrityKeys.mac_head
    signed: list[int] = []
    maced: list[int] = []

    def counting_sign(self: IntegrityKeys, seq: int, head_hash: bytes,
                      ledger_id: bytes | None = None) -> Any:
        signed.append(seq)  # the real signature, counted
        return real_sign(self, seq, head_hash, ledger_id)

    def counting_mac(self: IntegrityKeys, ledger_id: bytes, seq: int, head_hash: bytes) -> Any:
        maced.append(seq)
        return real_mac(self, ledger_id, seq, head_hash)

    monkeypatch.setattr(IntegrityKeys, "sign_head", counting_sign)
    monkeypatch.setattr(IntegrityKeys, "mac_head", counting_mac)

    def invalid(cfg: Any) -> None:
        cfg.server.port = "not a port"

    outs, group_commits = grouped(ledger, path, [(increment, {}), (increment, {}),
                                                 (increment, {}), (invalid, {})])
    assert group_commits == 1
    stored = [o.commit.seq for o in outs if o.commit is not None]
    assert len(stored) == 3 and isinstance(outs[3].error, ConfigValidationError)
    # the blocker's own transaction signed once, the group once: its last stored event
    assert signed[-1] == max(stored) and len(signed) == 2
    assert maced == signed
    report = ledger.verify(expect_key=store.signing_key_fingerprint())
    assert report.ok and report.signed_seq == report.mac_seq == max(stored)
