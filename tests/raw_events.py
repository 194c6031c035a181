"""An event appended below the backend (raw SQL), chained to the head as a writer would
chain it: for tests of rows the backend's own append refuses (a payload no release
writes), which reads, verify and rebuild-snapshots must still judge."""

from __future__ import annotations

from pathlib import Path

import apsw

from ledger.backends.sqlite import SqliteBackend
from ledger.core.chain import link


def append_chained(db: Path, payload: bytes) -> None:
    """Append a change event holding `payload` after the head of the ledger at `db`."""
    backend = SqliteBackend(db, read_only=True)
    head = backend.head()
    backend.close()
    seq, ts = head.seq + 1, head.ts + 1
    hash_ = link(head.hash, seq, ts, "x", "", "api", "change", payload)
    conn = apsw.Connection(str(db))
    conn.execute("INSERT INTO ledger_events VALUES (?,?,?,?,?,?,?,?,?)",
                 (seq, ts, "x", "", "api", "change", payload, head.hash, hash_))
    conn.close()
