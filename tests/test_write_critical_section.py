"""What a writer does while it holds the database's write lock (issue 16, figure 8 and
i16g): every other writer process waits for it, so nothing that could run before the
lock may run inside it. A process's first append used to import `cryptography` there
(deriving the integrity keys), which on a cold start costs tens of milliseconds for
every writer queued behind it.

A real, fresh process (only a fresh one has not imported anything yet) opens a ledger
another process created, reads it, and makes its first write; the modules that appear
while its write transaction is open are recorded, and whether the decoders its edit
needs (tens of ms to build) were built before."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from ledger import SqliteConfigStore

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import asyncio, contextlib, json, sys
from ledger import SqliteConfigStore
from ledger.backends import sqlite

inside = []
plain_write = sqlite.SqliteBackend.write

@contextlib.contextmanager
def write(self, **kw):
    with plain_write(self, **kw) as txn:
        codec = store.ledger._codec
        if codec is None or "section_decoders" not in vars(codec):
            inside.append("the section decoders of update_raw's edit")
        before = set(sys.modules)
        yield txn
        inside.extend(sorted(set(sys.modules) - before))

sqlite.SqliteBackend.write = write
store = SqliteConfigStore(sys.argv[1])

def increment(cfg):
    cfg.tools.agent_timeout_secs += 1

async def main():
    await store.load_raw()
    await store.update_raw(increment, actor="probe")
    await store.close()

asyncio.run(main())
print(json.dumps(inside))
"""


def test_a_first_write_imports_and_builds_nothing_holding_the_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    store = SqliteConfigStore(db)
    asyncio.run(store.save_raw({"tools": {"agent_timeout_secs": 600}}, actor="setup",
                               source="import"))
    asyncio.run(store.close())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(db)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    store = SqliteConfigStore(db)
    assert asyncio.run(store.load_raw()).tools.agent_timeout_secs == 601
    assert store.ledger.verify().ok
    asyncio.run(store.close())
