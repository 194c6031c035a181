"""One rule for "the first event that needs format 2": the write path (`format_needed`,
on every append) and the read path (`FormatScan`: verify, rebuild-snapshots, a backup's
key rotation) use the same scan, defined once below the engine (ledger.backends.base),
so they cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import SqliteConfigStore
from ledger.backends import base
from ledger.core.events import Record
from ledger.engine import format_check
from ledger.errors import VerificationError
from tests.conftest import run

MALFORMED = b'{"changes":[{"op":"set","path":["a"],"sealed":true,"value":[1,}'


def _records(tmp_path: Path) -> list[Record]:
    store = SqliteConfigStore(tmp_path / "m.db")
    try:
        run(store.edit({("server", "port"): 1}, reason="plain"))
        run(store.edit({("mcp", "servers", "gh", "command"): "gh",
                        ("mcp", "servers", "gh", "args"): ["--api-key", "sk-list-secret-0003"]},
                       reason="a secret inside a list"))
        run(store.edit({("server", "port"): 2}, reason="plain again"))
        return list(store.ledger.backend.read())
    finally:
        store.ledger.close()


def test_the_scan_has_one_home_below_the_engine() -> None:
    assert base.FormatScan.__module__ == "ledger.backends.base"
    assert format_check.FormatScan is base.FormatScan


def _scan(records: list[Record]) -> int:
    scan = base.FormatScan()
    for r in records:
        scan.see(r.seq, r.kind, r.payload)
    scan.check()
    return scan.needed


def test_write_path_and_read_path_agree(tmp_path: Path) -> None:
    plain, sealed, later = _records(tmp_path)
    for records in ([plain], [plain, later], [sealed], [plain, sealed, later], []):
        assert base.format_needed(records) == _scan(records), records
    assert base.format_needed([plain, sealed]) == base.FORMAT_SEALED_LISTS
    bad = Record(4, later.ts, "x", "", "api", "change", MALFORMED, later.hash, later.hash)
    for check in (base.format_needed, _scan):
        with pytest.raises(VerificationError, match="event 4"):
            check([plain, bad])
