"""Group commit keeps its groups full (issue 16, i16d/i16e): when a group's commit
returns, its writers all wake at once, and the first one back must not commit alone
while the others are still on their way back.

Real threads on the real `Committer`. The commit step of the group that matters is made
slow (a second), which is what bounds how long the next leader gathers (the library's
own cap, a few ms, is lifted here so a loaded machine cannot make the test flaky); the
writers coming back need microseconds of it. No time is measured or asserted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

from ledger import ConfigValidationError, Secret
from ledger.engine.group_commit import Committer, Request
from ledger.schema.providers import ProviderConfig
from tests.conftest import run
from tests.test_group_commit import grouped, increment, new_store

PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time


def wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("the writers never got there")
        time.sleep(0.001)


def queued(c: Committer) -> int:
    with c._cond:
        return len(c._queue)


def test_the_writers_of_a_group_commit_together_again() -> None:
    committer = Committer()
    committer.gather_max_s = PATIENCE_S  # only the slow commit bounds the gathering
    batches: list[list[str]] = []
    go_first = threading.Event()

    def commit(batch: list[Request]) -> None:
        names = [r.params for r in batch]
        batches.append(names)
        if len(batches) == 1:
            go_first.wait(PATIENCE_S)  # the others queue behind the first writer
        elif len(batches) == 2:
            time.sleep(1.0)  # a slow commit: the next leader may gather that long
        for r in batch:
            r.result = r.params

    def writer(name: str, rounds: int) -> None:
        for i in range(rounds):
            assert committer.run(Request(None, f"{name}{i}"), commit) == f"{name}{i}"

    first = threading.Thread(target=writer, args=("a", 1))
    first.start()
    wait_until(lambda: len(batches) == 1)
    others = [threading.Thread(target=writer, args=(n, 2)) for n in "bcd"]
    for t in others:
        t.start()
    wait_until(lambda: queued(committer) == 3)
    go_first.set()
    for t in [first, *others]:
        t.join(PATIENCE_S)
    assert batches[0] == ["a0"]
    assert sorted(batches[1]) == ["b0", "c0", "d0"]
    # b, c and d came back at once: one group, not the first one back alone
    assert sorted(batches[2]) == ["b1", "c1", "d1"], batches
    assert len(batches) == 3


def test_a_failing_group_still_lets_the_next_one_gather() -> None:
    committer = Committer()
    committer.gather_max_s = PATIENCE_S  # only the slow commit bounds the gathering
    batches: list[list[str]] = []
    release = threading.Event()

    def commit(batch: list[Request]) -> None:
        batches.append([r.params for r in batch])
        if len(batches) == 1:
            release.wait(PATIENCE_S)
        if len(batches) == 2:
            time.sleep(1.0)
            raise OSError("disk gone")  # every request of the group gets the error
        for r in batch:
            r.result = r.params

    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            committer.run(Request(None, name + "0"), commit)
        except OSError as err:
            errors.append(err)
        committer.run(Request(None, name + "1"), commit)

    first = threading.Thread(target=lambda: committer.run(Request(None, "a0"), commit))
    first.start()
    wait_until(lambda: len(batches) == 1)
    others = [threading.Thread(target=writer, args=(n,)) for n in "bc"]
    for t in others:
        t.start()
    wait_until(lambda: queued(committer) == 2)
    release.set()
    for t in [first, *others]:
        t.join(PATIENCE_S)
    assert len(errors) == 2
    assert sorted(batches[2]) == ["b1", "c1"], batches


def test_a_failing_event_in_a_group_leaves_none_of_its_rows(tmp_path: Path) -> None:
    """The savepoint of one event (apsw's, on the real database) undoes the rows it
    wrote before failing: a secret sealed by a write whose value was then refused is
    not left in the database, and the events around it commit in the same group."""
    path = tmp_path / "g.db"
    store = new_store(path)
    ledger = store.ledger
    before = {row.ref for row in ledger.backend.secrets()}

    def sealed_then_refused(cfg: Any) -> None:
        cfg.providers["openai"] = ProviderConfig(api_key=Secret("sk-GROUP-refused-0123456789"))
        cfg.server.port = "not a port"  # refused after the secret was sealed

    def fine(cfg: Any) -> None:
        cfg.server.port = 15000

    outs, group_commits = grouped(ledger, path, [(increment, {}), (sealed_then_refused, {}),
                                                 (fine, {})])
    assert group_commits == 1
    ok, refused, last = outs
    assert ok.error is None and last.error is None
    assert isinstance(refused.error, ConfigValidationError)
    assert {row.ref for row in ledger.backend.secrets()} == before
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT count(*) FROM ledger_secrets").fetchone()[0]
    finally:
        conn.close()
    assert rows == len(before)
    assert run(store.load_raw()).server.port == 15000
    assert ledger.verify().ok
