"""`rebuild-snapshots` refuses a log with an event that does not decode wherever it is,
as `verify` reports it: also after an event that already needs format 2 (where the
format scan has its answer and looks no further) and after the last snapshot boundary
(where nothing was replayed to build a snapshot)."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.errors import LedgerError
from tests.conftest import run
from tests.raw_events import append_chained

# with and without the byte mark of a sealed list: neither is JSON
MALFORMED = (b'{"changes":[{"op":"set","path":["a"],"sealed":true,"value":[1,}',
             b'{"changes":[{"op":"set","path":["a"],"value":')


def _ledger(tmp_path: Path, payload: bytes) -> Path:
    """Event 1 needs format 2 (a secret inside a list); event 2 is plain; event 3 does
    not decode, after the last snapshot (every 64 events)."""
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    run(store.edit({("mcp", "servers", "gh", "command"): "gh",
                    ("mcp", "servers", "gh", "args"): ["--api-key", "sk-list-secret-0003"]},
                   reason="a secret inside a list"))
    run(store.edit({("server", "port"): 8113}, reason="plain"))
    store.ledger.close()
    append_chained(db, payload)  # below the backend: its append refuses such a row
    return db


def _snapshots(db: Path) -> list[tuple[int, bytes]]:
    conn = apsw.Connection(str(db))
    try:
        return list(conn.execute("SELECT seq, state FROM ledger_snapshots ORDER BY seq"))
    finally:
        conn.close()


@pytest.mark.parametrize("payload", MALFORMED, ids=["sealed-mark", "plain"])
def test_rebuild_refuses_what_verify_reports(tmp_path: Path, payload: bytes) -> None:
    db = _ledger(tmp_path, payload)
    before = _snapshots(db)
    store = SqliteConfigStore(db)
    try:
        report = store.ledger.verify()
        assert not report.ok and report.first_bad_seq == 3, report
        with pytest.raises(LedgerError, match="event 3"):
            store.ledger.rebuild_snapshots()
    finally:
        store.ledger.close()
    assert _snapshots(db) == before  # refused: nothing replaced
