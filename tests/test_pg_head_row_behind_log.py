"""PostgreSQL's head is a row: moved back together with the head MAC row an attacker
(SQL access, no key) saved while that older head was current, the MAC vouches for the
head read. The events after it are still in the log, and one indexed look-up says so:
a keyed reader without a head mark (another gateway host) refuses it, as `verify` does
(review round 6, F4; round 5's R6 refused the head row moved back alone)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.errors import LedgerError
from tests.pg import keyed_reader_port, keyed_writer

pytestmark = pytest.mark.postgres  # counted, and never skipped under CI=true


def _moved_back(tmp_path: Path, pg_url: str,
                before: Callable[[str, bytes], None] | None = None) -> tuple[str, bytes]:
    """A keyed ledger whose head row and head MAC row were put back to those of its
    event 2 (of 3) by someone with SQL access, which the attacker read and kept while
    event 2 was the head: (schema, key). `before(schema, key)` runs before the rows are
    put back."""
    writer, key = keyed_writer(pg_url, tmp_path / "a")  # its head mark goes there
    schema = writer.ledger.backend.schema
    saved: dict[str, Any] = {}
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for port in (2000, 3000):
            writer.ledger.edit({("server", "port"): port}, actor="w", reason="r")
            if port == 2000:
                saved["head"] = admin.execute(
                    f'SELECT seq, hash, ts FROM "{schema}".ledger_head').fetchone()
                saved["meta"] = admin.execute(
                    f'SELECT key, value FROM "{schema}".ledger_meta WHERE key IN '
                    "('head_mac', 'head_signature')").fetchall()
        writer.ledger.close()
        if before is not None:
            before(schema, key)
        admin.execute(f'UPDATE "{schema}".ledger_head SET seq = %s, hash = %s, ts = %s',
                      saved["head"])
        for meta_key, value in saved["meta"]:
            admin.execute(f'UPDATE "{schema}".ledger_meta SET value = %s WHERE key = %s',
                          (value, meta_key))
    return schema, key


def test_a_copy_of_a_ledger_whose_head_row_was_moved_back_is_refused(
        tmp_path: Path, pg_url: str) -> None:
    """`switch-backend sqlite`, `copy`: the copy reads one state of the live ledger from
    its head (ledger.ops.live_state); a head row put back must not make it leave the
    events after that head out, silently."""
    from ledger.backends.postgres import PostgresBackend
    from ledger.backends.sqlite import SqliteBackend
    from ledger.errors import VerificationError
    from ledger.ops.transfer import copy_ledger

    schema, _ = _moved_back(tmp_path, pg_url)
    source = PostgresBackend(pg_url, schema=schema, read_only=True)
    target = SqliteBackend(tmp_path / "copy.db")
    try:
        with pytest.raises(VerificationError, match="moved back"):
            copy_ledger(source, target)
        assert target.head().seq == 0  # nothing copied
    finally:
        source.close()
        target.close()


def test_a_head_row_moved_back_with_its_saved_mac_row_is_refused_while_later_events_remain(
        tmp_path: Path, pg_url: str) -> None:
    def reader_serves(schema: str, key: bytes) -> object:
        return keyed_reader_port(pg_url, schema, key, tmp_path / "b" / "ledger.key")

    def control(schema: str, key: bytes) -> None:  # the same reader, nothing moved yet
        assert reader_serves(schema, key) == 3000

    served = reader_serves(*_moved_back(tmp_path, pg_url, before=control))
    assert isinstance(served, LedgerError), served
    assert "head row is behind the log" in str(served)
