"""One writer's durable update (issue 16, figures 1 and 2): what a single-key
`update_raw` costs the disk and the event loop, checked structurally (pages written per
commit, wake-ups of the writer thread), never by time."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from ledger import SqliteConfigStore
from tests.conftest import run

DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600},
       "providers": {"openai": {"models": ["gpt-a", "gpt-b"]}}}

# a WAL frame: a 24-byte header and one page (the ledger's databases use 4096-byte pages)
FRAME = 24 + 4096


def _bump(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def _wal_size(path: Path) -> int:
    return os.path.getsize(f"{path}-wal")


def test_a_single_key_update_writes_two_pages(tmp_path: Path) -> None:
    """A single-key update changes the events table's last leaf and the head MAC's row
    in ledger_meta: two pages in the WAL, which the commit's fsync must carry. Writing the
    MAC row with INSERT OR REPLACE deleted the row and inserted it under a new rowid, so
    the key's index page was rewritten by every commit too (three pages)."""
    path = tmp_path / "ledger.db"
    store = SqliteConfigStore(path)
    run(store.save_raw(DOC, actor="setup"))
    run(store.update_raw(_bump, actor="me"))  # the process's first append signs the head
    frames = []
    for _ in range(20):  # far below the 1,000 pages that trigger a checkpoint
        before = _wal_size(path)
        run(store.update_raw(_bump, actor="me"))
        grown = _wal_size(path) - before
        assert grown % FRAME == 0
        frames.append(grown // FRAME)
    run(store.close())
    # now and then the events leaf fills up and a new page is linked in: look at the usual
    assert statistics.median(frames) == 2, frames


def test_the_head_mac_row_keeps_its_place(tmp_path: Path) -> None:
    """The MAC row is updated where it is (same rowid), and its value is the new head's
    MAC: nothing of the row's meaning changed, old readers read it as before."""
    import apsw

    path = tmp_path / "ledger.db"
    store = SqliteConfigStore(path)
    run(store.save_raw(DOC, actor="setup"))
    run(store.update_raw(_bump, actor="me"))
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    first = conn.execute("SELECT rowid, value FROM ledger_meta WHERE key = 'head_mac'"
                         ).fetchall()
    run(store.update_raw(_bump, actor="me"))
    second = conn.execute("SELECT rowid, value FROM ledger_meta WHERE key = 'head_mac'"
                          ).fetchall()
    conn.close()
    assert len(first) == len(second) == 1
    assert first[0][0] == second[0][0]
    assert first[0][1] != second[0][1]
    assert run(store.verify()).ok
    run(store.close())


def test_a_lone_async_write_resumes_its_task_in_two_loop_iterations(tmp_path: Path) -> None:
    """After the writer thread hands over the outcome, the waiting task runs in the next
    loop iteration: the loop wakes for the outcome (one select that blocks while the
    commit runs) and resumes the task (one more). A shield between the task and the
    write's future added a third iteration, and with it another select call and another
    moment the GIL goes to the writer thread, on every write."""
    import asyncio
    import selectors

    class Counting(selectors.DefaultSelector):  # the real selector, counted
        calls = 0

        def select(self, timeout: float | None = None) -> Any:
            Counting.calls += 1
            return super().select(timeout)

    store = SqliteConfigStore(tmp_path / "ledger.db", synchronous="NORMAL")

    async def writes(n: int) -> None:
        for _ in range(n):
            await store.update_raw(_bump, actor="me")

    loop = asyncio.SelectorEventLoop(Counting())
    try:
        loop.run_until_complete(store.save_raw(DOC, actor="setup"))
        loop.run_until_complete(writes(5))
        before = Counting.calls
        loop.run_until_complete(writes(100))
        per_write = (Counting.calls - before) / 100
        loop.run_until_complete(store.close())
    finally:
        loop.close()
    assert per_write <= 2.5, per_write
