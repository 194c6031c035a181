"""The SQLite event log: schema rules, durability settings, tamper detection, snapshots,
past reads and logging."""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime, timedelta

import apsw
import pytest

from ledger import (
    FormatVersionError,
    InvalidRefError,
    MoltisConfig,
    SqliteConfigStore,
)
from ledger.backends.sqlite import SqliteBackend
from ledger.core.chain import GENESIS, link
from ledger.engine.ledger import Ledger
from projections.config_view import EMPTY_STATE, replay
from tests.conftest import run


def set_port(port: int):
    def fn(cfg: MoltisConfig) -> None:
        cfg.server.port = port
    return fn


def fill(store: SqliteConfigStore, n: int, start: int = 1) -> None:
    for i in range(start, start + n):
        run(store.update_raw(set_port(i), actor=f"user{i % 3}", reason=f"step {i}"))


def raw_conn(path) -> apsw.Connection:
    return apsw.Connection(str(path))


def test_tables_are_prefixed_strict_and_append_only(tmp_path):
    store = SqliteConfigStore(tmp_path / "moltis.db")
    fill(store, 2)
    conn = raw_conn(tmp_path / "moltis.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    assert tables == {"ledger_meta", "ledger_events", "ledger_snapshots", "ledger_secrets"}
    sql = conn.execute("SELECT sql FROM sqlite_schema WHERE name='ledger_events'").fetchone()[0]
    assert sql.rstrip().endswith("STRICT")
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        conn.execute("UPDATE ledger_events SET actor='mallory' WHERE seq=1")
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        conn.execute("DELETE FROM ledger_events WHERE seq=2")
    with pytest.raises(apsw.ConstraintError, match="without a gap"):
        conn.execute("INSERT INTO ledger_events VALUES (9, 0, 'a', '', 'api', 'change', x'', "
                     "x'', x'')")
    assert conn.pragma("journal_mode") == "wal"


def test_lives_inside_an_existing_moltis_db(tmp_path):
    path = tmp_path / "moltis.db"
    conn = raw_conn(path)
    conn.execute("CREATE TABLE auth_password (id INTEGER PRIMARY KEY, password_hash TEXT)")
    conn.execute("INSERT INTO auth_password VALUES (1, 'x')")
    conn.close()
    store = SqliteConfigStore(path)
    fill(store, 1)
    conn = raw_conn(path)
    assert conn.execute("SELECT password_hash FROM auth_password").fetchone() == ("x",)


def test_durability_settings(tmp_path):
    full = SqliteBackend(tmp_path / "a.db")
    assert full._conn.pragma("synchronous") == 2  # FULL
    normal = SqliteBackend(tmp_path / "b.db", synchronous="NORMAL", busy_timeout=2.5)
    assert normal._conn.pragma("synchronous") == 1
    # the busy timeout is enforced by the backend's own polling busy handler (issue 16)
    assert normal._fair_wait.timeout_s == 2.5
    with pytest.raises(ValueError, match="synchronous"):
        SqliteBackend(tmp_path / "c.db", synchronous="OFF")  # type: ignore[arg-type]


def test_newer_format_is_refused_and_never_written(tmp_path):
    path = tmp_path / "moltis.db"
    fill(SqliteConfigStore(path), 1)
    conn = raw_conn(path)
    conn.execute("UPDATE ledger_meta SET value='99' WHERE key='format_version'")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(FormatVersionError, match="newer version"):
        SqliteConfigStore(path)
    assert path.read_bytes() == before


def test_database_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "moltis.db"
        fill(SqliteConfigStore(path), 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    wal = path.with_name("moltis.db-wal")
    if wal.exists():
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600


def _tamper(path, sql: str, *args) -> None:
    conn = raw_conn(path)
    conn.execute("DROP TRIGGER IF EXISTS ledger_events_no_update; "
                 "DROP TRIGGER IF EXISTS ledger_events_no_delete; "
                 "DROP TRIGGER IF EXISTS ledger_events_gap_free")
    conn.execute(sql, args)
    conn.close()


# verify naming the first tampered event: tests/contract/test_backend_contract.py


def test_dropped_triggers_come_back_when_a_writer_opens(tmp_path):
    path = tmp_path / "moltis.db"
    fill(SqliteConfigStore(path), 2)
    _tamper(path, "SELECT 1")
    SqliteConfigStore(path)
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        raw_conn(path).execute("DELETE FROM ledger_events WHERE seq = 1")


def test_verify_catches_a_forged_insert_and_a_truncated_tail(tmp_path):
    path = tmp_path / "moltis.db"
    store = SqliteConfigStore(path)
    fill(store, 6)
    head = store.ledger.verify().head_hash
    # a forged event appended with a correct-looking hash over a wrong previous link
    forged = link(GENESIS, 7, 0, "mallory", "", "api", "change", b'{"changes":[]}')
    _tamper(path, "INSERT INTO ledger_events VALUES (7, 0, 'mallory', '', 'api', 'change', "
                  "?, ?, ?)", b'{"changes":[]}', GENESIS, forged)
    report = SqliteConfigStore(path).ledger.verify()
    assert (report.ok, report.first_bad_seq) == (False, 7)
    # truncation: drop the last two events; the chain alone still verifies
    _tamper(path, "DELETE FROM ledger_events WHERE seq >= 5")
    assert SqliteConfigStore(path).ledger.verify_chain().ok
    report = SqliteConfigStore(path).ledger.verify(expect_head=head)
    assert not report.ok
    assert "truncated" in (report.problem or "")


def test_expected_head_may_be_an_older_head(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    fill(store, 3)
    recorded = store.ledger.verify().head_hash
    fill(store, 3, start=10)
    assert store.ledger.verify(expect_head=recorded).ok


def test_past_reads_by_seq_time_and_relative_ref(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    store.ledger.snapshot_every = 4
    fill(store, 11)
    for seq in range(12):
        expected = seq if seq else 0
        assert run(store.load_raw_at(seq)).server.port == expected
    assert run(store.load_raw_at("-3")).server.port == 8
    third = store.ledger.event(3)
    assert third is not None
    assert run(store.load_raw_at(third.time)).server.port == 3
    assert run(store.load_raw_at(third.time.isoformat())).server.port == 3
    before_all = datetime.now(UTC) - timedelta(days=1)
    assert run(store.load_raw_at(before_all)) == MoltisConfig()
    for bad in ("-99", "99", "the day before", "12:61"):
        with pytest.raises(InvalidRefError):
            run(store.load_raw_at(bad))


def test_snapshots_are_derived_and_rebuildable(tmp_path):
    path = tmp_path / "l.db"
    store = SqliteConfigStore(path)
    store.ledger.snapshot_every = 5
    fill(store, 23)
    assert store.ledger.backend.snapshot_seqs() == [5, 10, 15, 20]
    full = replay(EMPTY_STATE, store.ledger.backend.read())
    for seq in range(24):
        assert store.ledger.state_at(seq).config == replay(
            EMPTY_STATE, store.ledger.backend.read(until=seq)).config
    # a corrupted snapshot is ignored (with a warning), never trusted
    conn = raw_conn(path)
    conn.execute("UPDATE ledger_snapshots SET state = x'00' WHERE seq = 20")
    conn.close()
    fresh = SqliteConfigStore(path)
    fresh.ledger.snapshot_every = 5
    assert fresh.ledger.head_state().config == full.config
    assert fresh.ledger.rebuild_snapshots() == 4
    assert fresh.ledger.state_at(22).config == store.ledger.state_at(22).config


def test_history_lists_who_and_why(tmp_path):
    store = SqliteConfigStore(tmp_path / "l.db")
    fill(store, 4)
    events = run(store.history())
    assert [e.seq for e in events] == [4, 3, 2, 1]
    assert events[0].actor == "user1" and events[0].reason == "step 4"
    assert [e.seq for e in run(store.history(actor="user2"))] == [2]
    assert [e.seq for e in run(store.history(limit=2))] == [4, 3]
    assert [e.seq for e in run(store.history(since=2))] == [4, 3]
    assert run(store.history(path="identity")) == []
    assert len(run(store.history(path="server.port"))) == 4


def test_other_process_writes_are_seen(tmp_path):
    path = tmp_path / "l.db"
    reader = SqliteConfigStore(path)
    writer = SqliteConfigStore(path)
    assert run(reader.load_raw()).server.port == 0
    fill(writer, 3)
    assert run(reader.load_raw()).server.port == 3
    # and a write from the reader rebases onto the other writer's head
    run(reader.update_raw(lambda c: setattr(c.identity, "name", "Atlas")))
    assert run(writer.raw_document()) == {"server": {"port": 3}, "identity": {"name": "Atlas"}}
    assert writer.ledger.verify().ok


def test_one_log_line_per_append_without_values(tmp_path, caplog, capsys):
    store = SqliteConfigStore(tmp_path / "l.db")
    with caplog.at_level(logging.INFO, logger="ledger"):
        run(store.update_raw(set_port(4242), actor="alice"))
        run(store.update_raw(set_port(4242), actor="alice"))  # no change, no line
    appended = [r for r in caplog.records if r.getMessage() == "appended"]
    assert len(appended) == 1
    rec = appended[0]
    assert rec.seq == 1 and rec.actor == "alice" and rec.paths == ["server.port"]
    assert rec.duration_ms >= 0
    assert "4242" not in str(rec.__dict__)
    assert capsys.readouterr().out == ""


def test_silent_unless_the_host_configures_logging(tmp_path, capsys):
    store = SqliteConfigStore(tmp_path / "l.db")
    run(store.update_raw(set_port(1)))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_ledger_engine_is_usable_without_asyncio(tmp_path):
    engine = Ledger(SqliteBackend(tmp_path / "l.db"))
    engine.update_typed(set_port(7), actor="script")
    assert engine.typed().server.port == 7
    assert engine.verify().ok


def test_verify_names_an_event_whose_text_is_no_longer_utf8(tmp_path):
    path = tmp_path / "moltis.db"
    fill(SqliteConfigStore(path), 6)
    _tamper(path, "UPDATE ledger_events SET actor = CAST(x'41ff42' AS TEXT) WHERE seq = 4")
    report = SqliteConfigStore(path).ledger.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4)
