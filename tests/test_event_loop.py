"""The async stores keep the event loop free (issue 16): blocking backend work (the
lock wait, the statements, the fsync) runs in a worker thread. Measured by progress,
never by time: a ticker task on the loop must keep ticking while a write is stuck
inside its transaction."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ledger import MemoryConfigStore, SqliteConfigStore
from tests.conftest import run

DOC = {"server": {"port": 13131}}
TICKS = 5
PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_the_loop_keeps_running_while_a_write_is_in_its_transaction(tmp_path, kind):
    store = SqliteConfigStore(tmp_path / "l.db") if kind == "sqlite" else MemoryConfigStore()
    run(store.save_raw(DOC, actor="setup"))
    ticked = threading.Event()
    ticks_during_write: list[int] = []

    def slow_fn(cfg: Any) -> None:
        # runs inside the write transaction; returns only once the loop has ticked
        # TICKS times, which it can only do if this write is not running on it
        assert ticked.wait(PATIENCE_S), "the event loop was blocked by the write"
        cfg.server.port = 8080

    async def main() -> int:
        ticks = 0
        write = asyncio.ensure_future(store.update_raw(slow_fn, actor="gw"))
        while not write.done():
            await asyncio.sleep(0)
            ticks += 1
            if ticks == TICKS:
                ticks_during_write.append(ticks)
                ticked.set()
        commit = await write
        return commit.seq

    assert run(main()) == 2
    assert ticks_during_write == [TICKS]
    assert run(store.load_raw()).server.port == 8080
