"""Opening a ledger while another process writes to it (issue 16's writer processes):
the open reads the head, then the head mark beside the key. A writer that commits a
signed checkpoint between those two reads raises the mark past the head the open read,
which is exactly what an older copy put back looks like; the open refused a live,
genuine ledger ("older than one this key has seen"; seen in figure 8's writer
processes). The mark is raised only once its event is durable in the log, so the
opener reads the head again: a genuine ledger has the marked event by then, a copy put
back still has not (tests/test_head_mark*.py and the tamper torture keep that refused).

The other writer is real and commits at the exact point through a hook on the
opener's head read (the real read runs first); nothing is simulated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger import SqliteConfigStore, VerificationError
from ledger.engine.vault import KeySource
from tests.conftest import run


def _keys(tmp_path: Path) -> KeySource:
    return KeySource(key_file=tmp_path / "ledger.key", env={})


def _keyed_ledger_with_one_write(tmp_path: Path) -> Path:
    """A keyed SQLite ledger holding one write (port 8000), closed: its database."""
    db = tmp_path / "moltis.db"
    first = SqliteConfigStore(db, keys=_keys(tmp_path))
    first.ledger.edit({("server", "port"): 8000}, actor="setup", reason="first")
    first.ledger.close()
    return db


def _writes_between_head_and_mark(opener: SqliteConfigStore, writer: SqliteConfigStore,
                                  port: int) -> None:
    """On the opener's first head read: the real read, then `writer`'s signed write
    (a fresh ledger object's first append signs a checkpoint and raises the mark)."""
    backend = opener.ledger.backend
    real_head = backend.head
    fired = []

    def head() -> Any:
        got = real_head()
        if not fired:
            fired.append(got.seq)
            writer.ledger.edit({("server", "port"): port}, actor="other", reason="meanwhile")
        return got

    backend.head = head  # type: ignore[method-assign]


def test_a_ledger_opened_while_another_writer_signs_is_not_taken_for_a_copy(tmp_path):
    db = _keyed_ledger_with_one_write(tmp_path)
    writer = SqliteConfigStore(db, keys=_keys(tmp_path))
    opener = SqliteConfigStore(db, keys=_keys(tmp_path))
    _writes_between_head_and_mark(opener, writer, 9000)
    cfg = run(opener.load_raw())  # refused before: the mark was ahead of the head read
    assert cfg.server.port in (8000, 9000)
    assert run(opener.load_raw()).server.port == 9000  # caught up as usual
    assert opener.ledger.verify().ok
    writer.ledger.close()
    opener.ledger.close()


def test_verify_while_another_writer_signs_passes(tmp_path):
    """verify reads the chain, then the mark: a checkpoint marked in between is in the
    log (the same rule as the open's)."""
    db = _keyed_ledger_with_one_write(tmp_path)
    writer = SqliteConfigStore(db, keys=_keys(tmp_path))
    checker = SqliteConfigStore(db, keys=_keys(tmp_path))
    run(checker.load_raw())
    real = checker.ledger.mark_problem
    fired = []

    def mark_problem(head_seq: int, *unreadable: Any) -> Any:
        if not fired:
            fired.append(head_seq)
            writer.ledger.edit({("server", "port"): 9000}, actor="other", reason="meanwhile")
        return real(head_seq, *unreadable)

    checker.ledger.mark_problem = mark_problem  # type: ignore[method-assign]
    report = checker.ledger.verify()
    assert fired and report.ok, report.problem
    writer.ledger.close()
    checker.ledger.close()


def test_a_copy_put_back_is_still_refused(tmp_path):
    """The other side of the same rule: an older copy of the database stays older when
    its head is read again."""
    db = _keyed_ledger_with_one_write(tmp_path)
    old = db.read_bytes()
    store = SqliteConfigStore(db, keys=_keys(tmp_path))
    store.ledger.edit({("server", "port"): 8001}, actor="setup", reason="second")
    store.ledger.close()  # signs and marks event 2
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(old)
    with pytest.raises(VerificationError, match="older than one this key has seen"):
        run(SqliteConfigStore(db, keys=_keys(tmp_path)).load_raw())
