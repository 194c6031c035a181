"""The SQLite backend's count of what an append stored (closing note 5, "Noticed": its
comment said triggers' own writes are not counted by `total_changes()`; SQLite counts
them). A foreign trigger that swallows the event (RAISE(IGNORE)) after writing a row
elsewhere made the count come out right: the backend said nothing, and a batch append
(import-bundle, restore, backup, copy_ledger) has no head check after it."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from ledger.backends.sqlite import SqliteBackend
from ledger.core.events import Record
from ledger.engine.ledger import Ledger
from ledger.errors import StoreError

SIDE_WRITE = ("CREATE TABLE side (seq INTEGER); "
              "CREATE TRIGGER swallow BEFORE INSERT ON ledger_events BEGIN "
              "INSERT INTO side VALUES (new.seq); SELECT RAISE(IGNORE); END")


def _records(tmp_path: Path, count: int) -> list[Record]:
    source = Ledger(SqliteBackend(tmp_path / "source.db", write_queue=False))
    for n in range(count):
        source.edit({("server", "port"): 9000 + n}, actor="t", reason="r")
    records = list(source.backend.read())
    source.close()
    return records


def _target(tmp_path: Path) -> SqliteBackend:
    db = tmp_path / "target.db"
    SqliteBackend(db, write_queue=False).close()  # the ledger's own schema
    conn = apsw.Connection(str(db))
    conn.execute(SIDE_WRITE)
    conn.close()
    return SqliteBackend(db, write_queue=False)


@pytest.mark.parametrize("count", [1, 3], ids=["one event", "a batch"])
def test_an_insert_swallowed_after_a_write_elsewhere_fails_the_append(tmp_path, count):
    records = _records(tmp_path, count)
    target = _target(tmp_path)
    try:
        with pytest.raises(StoreError, match="not stored"), target.write() as txn:
            txn.append(records)
        assert target.head().seq == 0
    finally:
        target.close()
