"""A forked child keeps writing: a gateway forked after its store was opened and used
(a pre-fork server such as gunicorn --preload) has none of the parent's threads, so
the parent's async writer thread does not exist in the child. Its writes must still
run there, not wait forever for a thread that is gone. (Forking while another thread
is inside a write is unsupported, as SQLite itself says: the locks that thread held
stay held in the child.)

Real processes (os.fork in a subprocess), a real SQLite file; nothing is timed: the
subprocess's timeout is a safety net, the assertions are on what was written."""

from __future__ import annotations

import os

import pytest

from ledger import SqliteConfigStore
from tests.conftest import run
from tests.fork_child import run_forked

SETUP = """
    import asyncio, sys
    from ledger import SqliteConfigStore

    async def write(store, port, actor="child"):
        await store.update_raw(lambda c: setattr(c.server, "port", port), actor=actor)

    store = SqliteConfigStore(sys.argv[1])
    asyncio.run(write(store, 1001, "parent"))        # the parent's writer thread now runs
"""
CHILD = """
    asyncio.run(write(store, 2002))
    store.ledger.update_typed(lambda c: setattr(c.server, "port", 2003), actor="child")
    asyncio.run(write(store, 2004))
    asyncio.run(store.close())
"""


@pytest.mark.parametrize("when", ["idle"])
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_through_a_store_its_parent_opened(tmp_path, when):
    db = tmp_path / "f.db"
    store = SqliteConfigStore(db)
    run(store.save_raw({"server": {"port": 1000}}, actor="setup"))
    run(store.close())
    run_forked(SETUP, CHILD, str(db), when, timeout=60)
    check = SqliteConfigStore(db, read_only=True)
    try:
        mine = [e.seq for e in check.ledger.events() if e.actor == "child"]
        assert [check.ledger.typed(seq).server.port for seq in mine] == [2002, 2003, 2004]
        assert check.ledger.verify().ok
    finally:
        run(check.close())
