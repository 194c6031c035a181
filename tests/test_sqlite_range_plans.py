"""The range reads of the SQLite backend (catch-up, history pages, replay chunks) are
rowid searches whatever the statistics say.

`PRAGMA optimize` on a connection opened while `ledger_events` held a few rows stored
`sqlite_stat1` = "1" for it, and from then on SQLite planned every
`seq > ? AND seq <= ?` read as a full SCAN: a running gateway paid O(events) per
catch-up. Judged by SQLite's own EXPLAIN QUERY PLAN, never by time."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.backends.sqlite import SqliteBackend

_RANGE = ("SELECT seq, kind, payload, hash, ts FROM ledger_events WHERE seq > ? AND "
          "seq <= ?{} ORDER BY seq {} LIMIT ?")


def _plans(conn: apsw.Connection) -> list[str]:
    plans = []
    for where in ("", " AND kind = 'change'"):
        for order in ("ASC", "DESC"):
            sql = "EXPLAIN QUERY PLAN " + _RANGE.format(where, order)
            plans += [row[3] for row in conn.execute(sql, (0, 10, 5))]
    return plans


@pytest.mark.parametrize("stale", ["optimized by an open", "left by an older release"])
def test_a_range_read_is_a_rowid_search(tmp_path: Path, stale: str) -> None:
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    store.ledger.edit({("server", "port"): 1000}, actor="t")
    store.ledger.close()
    if stale == "left by an older release":  # what `PRAGMA optimize` stored before
        conn = apsw.Connection(str(db))
        conn.execute("ANALYZE")
        assert conn.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'ledger_events'"
                            ).fetchone() is not None
        conn.close()
    for _ in range(2):  # each writable open used to run `PRAGMA optimize`
        backend = SqliteBackend(db)
        plans = _plans(backend._conn)
        backend.close()
        assert plans and all("SEARCH" in p and "SCAN" not in p for p in plans), plans
    reader = SqliteBackend(db, read_only=True)
    plans = _plans(reader._conn)
    reader.close()
    assert all("SCAN" not in p for p in plans), plans
