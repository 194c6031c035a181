"""`key rotate` re-sealing a ledger backup: when the re-seal itself fails, that failure
is what the operator is told, not a later error of the clean-up (folding the backup's
WAL back in, which another reader of the file makes fail)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import apsw
import pytest

from ledger.engine.vault import KeySource
from ledger.ops.backup import backup
from ledger.ops.backup_reseal import reseal_ledger_backups
from ledger.ops.open_store import open_ledger
from tests.conftest import run


def _sealed_backup(tmp_path: Path, key: bytes) -> Path:
    """A ledger backup in <data dir>/backups holding a secret sealed with `key`."""
    store = open_ledger(str(tmp_path / "moltis.db"), keys=KeySource(key=key))
    try:
        run(store.providers.set("openai", api_key="sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1w"))
        target = tmp_path / "backups" / "ledger-1.db"
        target.parent.mkdir(mode=0o700)
        assert backup(store.ledger, target).ok
    finally:
        run(store.close())
    return target


def test_the_real_error_of_a_failed_reseal_is_reported(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    target = _sealed_backup(tmp_path, old_key)
    # a backup whose re-seal fails (here: a trigger refusing any change of its meta) ...
    conn = apsw.Connection(str(target))
    conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON ledger_secrets "
                 "BEGIN SELECT RAISE(ABORT, 'the re-seal was refused here'); END")
    # ... while another process reads it (in WAL mode: it keeps a shared lock open)
    conn.pragma("journal_mode", "wal")
    conn.execute("SELECT count(*) FROM ledger_meta").fetchall()
    try:
        with caplog.at_level(logging.WARNING):
            assert reseal_ledger_backups(tmp_path, old_key, new_key) == (0, 1)
    finally:
        conn.close()
    logged = " ".join(str(r.__dict__) for r in caplog.records)
    assert "the re-seal was refused here" in logged
