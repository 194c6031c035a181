"""A write re-reads the key check row (another process's rotation may have committed
since this one unlocked the key: ledger.engine.vault.integrity_now) only when the head
moved since it last saw the key check hold. A writer alone on its ledger reads it once:
on PostgreSQL the read turned the async store's one-statement optimistic append into
the locked way (three round trips instead of one; figure 10a halved).

Seen through SQLite's own statement trace (apsw's exec tracer on the store's real
connection), never by time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger import SqliteConfigStore
from ledger.engine.vault import KeySource
from tests.rotation_crash import build_site


def _key_check_reads(store: SqliteConfigStore, writes: list[int]) -> int:
    """How many times the writes of `writes` (ports) read the key check row."""
    seen: list[Any] = []

    def trace(_cursor: Any, sql: str, bindings: Any) -> bool:
        if "ledger_meta" in sql and bindings and "key_check" in tuple(bindings):
            seen.append(sql)
        return True

    conn = store.ledger.backend._conn  # type: ignore[attr-defined]
    conn.exec_trace = trace
    try:
        for port in writes:
            store.ledger.edit({("server", "port"): port}, actor="g", reason="write")
    finally:
        conn.exec_trace = None
    return len(seen)


def test_a_writer_alone_reads_the_key_check_only_when_the_head_moved(tmp_path: Path) -> None:
    site = build_site(tmp_path / "site")
    db = site.data_dir / "moltis.db"
    gateway = SqliteConfigStore(db, keys=KeySource(key_file=site.key_file, env={}))
    _key_check_reads(gateway, [8000])  # the first write looks (the head is new to it)
    assert _key_check_reads(gateway, list(range(8001, 8011))) == 0
    # another writer appends: the head moved, so the next write looks again, once
    other = SqliteConfigStore(db, keys=KeySource(key_file=site.key_file, env={}))
    other.ledger.edit({("server", "port"): 9000}, actor="o", reason="other")
    other.ledger.close()
    assert _key_check_reads(gateway, [8100]) == 1
    assert _key_check_reads(gateway, [8101, 8102]) == 0
    assert gateway.ledger.verify().ok
    gateway.ledger.close()
