"""Issue 16 (CPU per update): the SQL one durable update runs, counted in SQLite's own
statement trace (apsw's exec tracer on the store's real connection), never by time.

A keyed single-key update is BEGIN, the head read, the event INSERT, the head MAC
upsert and COMMIT. The head is no longer read a second time after the INSERT: the
backend proves the row went in (its INSERT itself stored exactly one row, and nothing
else in the database changed, triggers included), so the head is the new event. The
tests below it keep that proof honest: a foreign trigger that swallows the row, or
puts another in its place, or adds one beside it, is still refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.backends.base import Head
from ledger.backends.sqlite import SqliteBackend
from ledger.core.chain import link
from ledger.core.events import KIND_CHANGE, Change, ChangePayload, Record, encode_payload
from ledger.errors import StoreError
from tests.conftest import run


def _increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def _statements(store: SqliteConfigStore, writes: int) -> list[str]:
    seen: list[str] = []

    def trace(_cursor: Any, sql: str, _bindings: Any) -> bool:
        seen.append(" ".join(sql.split()[:3]))
        return True

    conn = store.ledger.backend._conn  # type: ignore[attr-defined]
    conn.exec_trace = trace
    try:
        for _ in range(writes):
            store.ledger.update_typed(_increment, actor="t")
    finally:
        conn.exec_trace = None
    return seen


def test_a_keyed_update_runs_five_statements(tmp_path: Path) -> None:
    store = SqliteConfigStore(tmp_path / "moltis.db")
    store.ledger.edit({("tools", "agent_timeout_secs"): 600}, actor="t")
    store.ledger.update_typed(_increment, actor="t")  # the first write signs a checkpoint
    seen = _statements(store, 3)
    assert seen == ["BEGIN IMMEDIATE", "SELECT seq, hash,", "INSERT INTO ledger_events",
                    "INSERT INTO ledger_meta", "COMMIT"] * 3, seen
    assert store.ledger.verify().ok
    store.ledger.close()


def _foreign_trigger(db: Path, sql: str) -> None:
    conn = apsw.Connection(str(db))
    conn.execute(sql)
    conn.close()


_COLUMNS = "seq, ts, actor, reason, source, kind, payload, prev_hash, hash"


@pytest.mark.parametrize("trigger", [
    # the row is swallowed
    "CREATE TRIGGER t BEFORE INSERT ON ledger_events BEGIN SELECT RAISE(IGNORE); END",
    # another row takes its place (one row still goes in: the change count alone is 1)
    f"CREATE TRIGGER t BEFORE INSERT ON ledger_events WHEN NEW.reason != 'sub' BEGIN "
    f"INSERT INTO ledger_events ({_COLUMNS}) VALUES (NEW.seq, NEW.ts, NEW.actor, 'sub', "
    f"NEW.source, NEW.kind, NEW.payload, NEW.prev_hash, zeroblob(32)); "
    f"SELECT RAISE(IGNORE); END",
    # another row goes in after it
    f"CREATE TRIGGER t AFTER INSERT ON ledger_events WHEN NEW.reason != 'extra' BEGIN "
    f"INSERT INTO ledger_events ({_COLUMNS}) VALUES (NEW.seq + 1, NEW.ts, NEW.actor, "
    f"'extra', NEW.source, NEW.kind, NEW.payload, NEW.hash, zeroblob(32)); END",
    # something else in the database changes with it
    "CREATE TRIGGER t AFTER INSERT ON ledger_events BEGIN "
    "INSERT INTO ledger_meta (key, value) VALUES ('x' || NEW.seq, 'y'); END",
], ids=["swallowed", "replaced", "added", "side-write"])
def test_a_foreign_trigger_on_the_insert_is_refused(tmp_path: Path, trigger: str) -> None:
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    store.ledger.edit({("tools", "agent_timeout_secs"): 600}, actor="t")
    head = store.ledger.backend.head()
    store.ledger.close()
    _foreign_trigger(db, trigger)
    store = SqliteConfigStore(db)
    with pytest.raises(StoreError, match="not stored"):
        run(store.update_raw(_increment, actor="t"))
    assert store.ledger.backend.head() == head  # nothing of it was committed
    store.ledger.close()


def _record(prev: Head, n: int) -> Record:
    payload = encode_payload(ChangePayload(changes=[
        Change("config", ("server", "port"), 1000 + n)]))
    seq, ts = prev.seq + 1, prev.ts + 1
    return Record(seq, ts, "t", "", "api", KIND_CHANGE, payload, prev.hash,
                  link(prev.hash, seq, ts, "t", "", "api", KIND_CHANGE, payload))


def test_a_head_proven_inside_a_rolled_back_savepoint_is_forgotten(tmp_path: Path) -> None:
    """ROLLBACK TO leaves SQLite's change counter as it was: the head the backend proved
    for an event its savepoint then undid must not be served by `head()`."""
    backend = SqliteBackend(tmp_path / "moltis.db")
    with backend.write() as txn:
        first = _record(txn.head(), 1)
        txn.append([first])

        def failing_member() -> None:
            with txn.savepoint():
                txn.append([_record(txn.head(), 2)])
                assert txn.head().seq == 2
                raise RuntimeError("this member of the group failed")

        with pytest.raises(RuntimeError):
            failing_member()
        assert txn.head() == Head(first.seq, first.hash, first.ts)
    assert backend.head() == Head(first.seq, first.hash, first.ts)
    backend.close()
