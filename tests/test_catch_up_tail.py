"""A running reader that catches up on events appended without the ledger key
(closing note 5, "Noticed"): a fresh open warns that nothing vouches for them, a
catch-up said nothing. Now the catch-up of a read warns the same way; and a tail the
head MAC disowns is refused there as at an open."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ledger.errors import VerificationError
from tests.conftest import run
from tests.test_head_vouch import bump, keyless, rechain, store_at


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return " ".join(str(r.__dict__) for r in caplog.records)


def test_a_catch_up_warns_about_a_keyless_tail_as_an_open_does(tmp_path, caplog):
    db = tmp_path / "moltis.db"
    writer = store_at(db)
    bump(writer, 2)
    reader = store_at(db)
    assert run(reader.load_raw()).tools.agent_timeout_secs == 602
    plain = store_at(db, keys=keyless(tmp_path))  # a writer without the key appends
    bump(plain, 2)
    plain.ledger.close()
    with caplog.at_level(logging.WARNING):
        assert run(reader.load_raw()).tools.agent_timeout_secs == 604
    logged = _logged(caplog)
    assert "2 events at the head (events 3..4) were appended without the ledger key" in (
        logged), logged
    assert "sign-head --adopt" in logged
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # nothing new: nothing said again
        run(reader.load_raw())
    assert "without the ledger key" not in _logged(caplog)
    # a fresh open says the same
    fresh = store_at(db)
    with caplog.at_level(logging.WARNING):
        run(fresh.load_raw())
    assert "events 3..4) were appended without the ledger key" in _logged(caplog)
    for store in (writer, reader, fresh):
        store.ledger.close()


def test_a_keyed_catch_up_is_said_nothing_about(tmp_path, caplog):
    db = tmp_path / "moltis.db"
    writer, reader = store_at(db), store_at(db)
    bump(writer)
    run(reader.load_raw())
    bump(writer, 2)
    with caplog.at_level(logging.WARNING):
        assert run(reader.load_raw()).tools.agent_timeout_secs == 603
    assert "without the ledger key" not in _logged(caplog)
    writer.ledger.close()
    reader.ledger.close()


def test_a_catch_up_onto_a_tail_the_head_mac_disowns_is_refused(tmp_path: Path):
    """The events after what the reader served are re-chained by someone without the
    key and the head MAC row left as it was: it names another event at its seq."""
    db = tmp_path / "moltis.db"
    writer = store_at(db)
    bump(writer, 2)
    reader = store_at(db)
    run(reader.load_raw())
    bump(writer, 2)
    writer.ledger.close()
    rechain(db, 3)
    with pytest.raises(VerificationError, match="head MAC"):
        run(reader.load_raw())
    reader.ledger.close()


def test_a_keyed_writer_does_not_build_on_a_tail_the_head_mac_disowns(tmp_path: Path,
                                                                      caplog):
    """The same rewrite under a process that writes: its catch-up before appending (no
    MAC read: its append checks the MAC) walked the re-chained events from what it had
    served, and its append, finding the MAC vouching for another event 4, wrote onto
    them unsigned with a warning; that process then served the rewritten history (and
    its own event on top) while every other process refused it. Nothing is written now,
    and it refuses to read it as a fresh reader does."""
    db = tmp_path / "moltis.db"
    stale = store_at(db)
    bump(stale, 2)
    other = store_at(db)
    bump(other, 2)
    other.ledger.close()
    rechain(db, 3)
    with caplog.at_level(logging.WARNING), pytest.raises(VerificationError, match="head MAC"):
        bump(stale)
    assert "written unsigned" not in _logged(caplog)
    with pytest.raises(VerificationError, match="head MAC"):
        run(stale.load_raw())
    stale.ledger.close()
    assert store_at(db).ledger.backend.head().seq == 4  # nothing was appended
