"""The writer thread's hand-over wait (`ledger.stores.writer.Writer._hand_over`): after a
group it blocks until the loop has taken the outcomes only when more writes are queued
(it would otherwise run the next group's Python while the woken loop waits for the GIL).
With nothing queued the thread goes to sleep for the next write anyway: waiting for the
loop's acknowledgement then only cost every uncontended async write one more thread
wake-up (figure 1).

Real SQLite files, real threads, a real event loop; nothing is timed: a caller's `fn`
holds the writer with threading events to fix the interleaving."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ledger import SqliteConfigStore
from ledger.stores import writer as writer_module
from tests.conftest import run

DOC = {"server": {"port": 1000}}
PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time


@pytest.fixture
def hand_overs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many loops each real hand-over waited for (the original still runs)."""
    seen: list[int] = []
    original = writer_module.Writer._hand_over

    def counted(self: writer_module.Writer, acks: list[threading.Event]) -> None:
        seen.append(len(acks))
        original(self, acks)

    monkeypatch.setattr(writer_module.Writer, "_hand_over", counted)
    return seen


def _store(tmp_path: Any) -> SqliteConfigStore:
    store = SqliteConfigStore(tmp_path / "w.db")
    run(store.save_raw(DOC, actor="setup"))
    return store


def _bump(cfg: Any) -> None:
    cfg.server.port += 1


def test_an_uncontended_async_write_does_not_wait_for_the_loop(tmp_path, hand_overs):
    store = _store(tmp_path)

    async def main() -> None:
        for _ in range(5):
            await store.update_raw(_bump, actor="gw")

    try:
        run(main())
        assert run(store.load_raw()).server.port == 1005
    finally:
        run(store.close())
    assert hand_overs == []


def test_writes_queued_behind_a_group_still_get_the_hand_over(tmp_path, hand_overs):
    """More writes queued when a group ends: the thread waits for the loop to take the
    outcomes before running the next group (the i16f loop-lag rule is kept)."""
    store = _store(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def held(cfg: Any) -> None:
        entered.set()
        if not release.wait(PATIENCE_S):
            raise RuntimeError("never released")
        cfg.server.port += 1

    async def main() -> None:
        first = asyncio.ensure_future(store.update_raw(held, actor="gw"))
        while not entered.is_set():  # the writer thread is inside the first group
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(store.update_raw(_bump, actor="gw")) for _ in range(6)]
        await asyncio.sleep(0)  # each task queues its write before the group ends
        release.set()
        await asyncio.gather(first, *rest)

    try:
        run(main())
        assert run(store.load_raw()).server.port == 1007
    finally:
        run(store.close())
    assert hand_overs and hand_overs[0] == 1
