"""PostgreSQL keeps its head in the one-row `ledger_head` table, which someone with SQL
access (and no key) can move back with one UPDATE, leaving every event and the head MAC
in place. A keyed reader with no head mark (another gateway host sharing the ledger, a
new config dir) must refuse it, as `verify` and the writer host (which has a mark) do:
a head MAC naming an event newer than the head read is a writer that committed since,
only if the stored head has reached that event when read again (review round 5, R6)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ledger.errors import LedgerError
from tests.pg import keyed_reader_port, keyed_writer

pytestmark = pytest.mark.postgres  # counted, and never skipped under CI=true


def test_a_head_row_moved_back_is_refused_by_a_keyed_reader_without_a_head_mark(
        tmp_path: Path, pg_url: str) -> None:
    writer, key = keyed_writer(pg_url, tmp_path / "a")  # its head mark goes there
    schema = writer.ledger.backend.schema
    for port in (2000, 3000):
        writer.ledger.edit({("server", "port"): port}, actor="w", reason="r")
    writer.ledger.close()

    def reader_serves() -> object:
        return keyed_reader_port(pg_url, schema, key, tmp_path / "b" / "ledger.key")

    assert reader_serves() == 3000  # the control: the same reader, the head untouched
    with psycopg.connect(pg_url, autocommit=True) as admin:
        row = admin.execute(
            f'SELECT seq, hash, ts FROM "{schema}".ledger_events WHERE seq = '
            f'(SELECT max(seq) - 1 FROM "{schema}".ledger_events)').fetchone()
        assert row is not None
        admin.execute(f'UPDATE "{schema}".ledger_head SET seq = %s, hash = %s, ts = %s', row)
    served = reader_serves()
    assert isinstance(served, LedgerError), served
    assert "head row is behind the log" in str(served)
