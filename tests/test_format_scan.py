"""The one scan for "the first event that needs format 2" (`ledger.engine.format_check.
FormatScan`), as `log_format` (key rotation of a backup), `verify` and
`rebuild-snapshots` use it: a row whose payload does not decode is reported, naming its
seq, by each of them; never skipped as "needs nothing"."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import SqliteConfigStore
from ledger.backends.sqlite import SqliteBackend
from ledger.engine.format_check import FormatScan, log_format
from ledger.errors import LedgerError, VerificationError
from tests.conftest import run
from tests.raw_events import append_chained

# it carries the byte mark of a sealed list (so the scan must decode it), and is no JSON
MALFORMED = b'{"changes":[{"op":"set","path":["a"],"sealed":true,"value":[1,}'


def _ledger_with_a_malformed_event(tmp_path: Path) -> Path:
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    for port in (1, 2):
        run(store.save_raw({"server": {"port": port}}, actor="setup"))
    store.ledger.close()
    append_chained(db, MALFORMED)  # below the backend: its append refuses such a row
    return db


def test_a_malformed_row_is_reported_by_every_user_of_the_scan(tmp_path: Path) -> None:
    db = _ledger_with_a_malformed_event(tmp_path)
    backend = SqliteBackend(db, read_only=True)
    try:
        with pytest.raises(VerificationError, match="event 3 cannot be decoded"):
            log_format(backend)
    finally:
        backend.close()
    store = SqliteConfigStore(db)
    try:
        report = store.ledger.verify()
        assert not report.ok and report.first_bad_seq == 3, report
        with pytest.raises(LedgerError, match="event 3"):
            store.ledger.rebuild_snapshots()
    finally:
        store.ledger.close()


def test_the_scan_holds_what_it_could_not_decode() -> None:
    scan = FormatScan()
    scan.see(1, "change", b'{"changes":[]}')
    scan.see(2, "change", MALFORMED)
    scan.see(3, "change", MALFORMED)
    assert scan.sealed_seq is None and scan.needed == 1
    assert scan.damaged is not None and scan.damaged.seq == 2
    with pytest.raises(VerificationError, match="event 2"):
        scan.check()
