"""What a writer reads, holding the write lock, after another writer committed (issue
16, figures 8 and i16g: with writer processes taking turns, every write starts this
way, and every writer queued behind it waits for what it reads). The head another
writer left must be vouched for by the stored head MAC before this writer MACs the new
head; when that MAC vouches for it, the stored signature has nothing to add and is not
read. Seen through SQLite's own statement trace on the store's real connection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ledger import SqliteConfigStore
from ledger.engine.vault import KeySource

REPO = Path(__file__).resolve().parents[1]
OTHER = """
import sys
from pathlib import Path
from ledger import SqliteConfigStore
from ledger.engine.vault import KeySource
store = SqliteConfigStore(sys.argv[1], keys=KeySource(key_file=Path(sys.argv[2]), env={}))
store.ledger.edit({("server", "port"): 9000}, actor="o", reason="other")
store.ledger.close()
"""


def _other_process_writes(db: Path, key_file: Path) -> None:
    """One write by another process (its own connection, group commit and memory of
    the head it vouched for), as another gateway's."""
    subprocess.run([sys.executable, "-c", OTHER, str(db), str(key_file)], cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, timeout=120,
                   capture_output=True)


def _meta_reads(store: SqliteConfigStore, port: int) -> list[str]:
    """The meta rows (by key) one write of `store` reads."""
    seen: list[str] = []

    def trace(_cursor: Any, sql: str, bindings: Any) -> bool:
        if sql.lstrip().startswith("SELECT") and "FROM ledger_meta" in sql:
            seen.extend(str(b) for b in bindings or ("*",))
        return True

    conn = store.ledger.backend._conn  # type: ignore[attr-defined]
    conn.exec_trace = trace
    try:
        store.ledger.edit({("server", "port"): port}, actor="g", reason="write")
    finally:
        conn.exec_trace = None
    return seen


def test_a_write_after_another_writers_commit_reads_the_mac_not_the_signature(tmp_path: Path
                                                                              ) -> None:
    db = tmp_path / "moltis.db"
    key_file = tmp_path / "ledger.key"
    gateway = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    gateway.ledger.edit({("server", "port"): 8000}, actor="g", reason="first")
    _other_process_writes(db, key_file)
    # the other writer's head: its MAC vouches for it (and the key check and history
    # id, which a rotation or a restore by that writer would have changed, are read
    # again)
    reads = _meta_reads(gateway, 8001)
    assert sorted(reads) == ["head_mac", "history_id", "key_check"]
    # alone again: it vouched for its own head, so nothing is read
    assert _meta_reads(gateway, 8002) == []
    assert gateway.ledger.verify().ok
    gateway.ledger.close()
