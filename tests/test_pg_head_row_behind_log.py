"""PostgreSQL's head is a row: moved back together with the head MAC row an attacker
(SQL access, no key) saved while that older head was current, the MAC vouches for the
head read. The events after it are still in the log, and one indexed look-up says so:
a keyed reader without a head mark (another gateway host) refuses it, as `verify` does
(review round 6, F4; round 5's R6 refused the head row moved back alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.errors import LedgerError
from tests.pg import keyed_reader_port, keyed_writer

pytestmark = pytest.mark.postgres  # counted, and never skipped under CI=true


def test_a_head_row_moved_back_with_its_saved_mac_row_is_refused_while_later_events_remain(
        tmp_path: Path, pg_url: str) -> None:
    writer, key = keyed_writer(pg_url, tmp_path / "a")  # its head mark goes there
    schema = writer.ledger.backend.schema
    saved: dict[str, Any] = {}
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for port in (2000, 3000):
            writer.ledger.edit({("server", "port"): port}, actor="w", reason="r")
            if port == 2000:  # what the attacker reads and keeps
                saved["head"] = admin.execute(
                    f'SELECT seq, hash, ts FROM "{schema}".ledger_head').fetchone()
                saved["meta"] = admin.execute(
                    f'SELECT key, value FROM "{schema}".ledger_meta WHERE key IN '
                    "('head_mac', 'head_signature')").fetchall()
        writer.ledger.close()

        def reader_serves() -> object:
            return keyed_reader_port(pg_url, schema, key, tmp_path / "b" / "ledger.key")

        assert reader_serves() == 3000  # the control: the same reader, nothing moved
        admin.execute(f'UPDATE "{schema}".ledger_head SET seq = %s, hash = %s, ts = %s',
                      saved["head"])
        for meta_key, value in saved["meta"]:
            admin.execute(f'UPDATE "{schema}".ledger_meta SET value = %s WHERE key = %s',
                          (value, meta_key))
    served = reader_serves()
    assert isinstance(served, LedgerError), served
    assert "head row is behind the log" in str(served)
