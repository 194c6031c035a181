"""The ledger_id row binds sealed secrets, MACs and the head mark to one ledger, and a
forger with write access to the database can change it: then nothing opens under the
new id and the mark beside the key (kept per ledger id) no longer applies. A key holder
must still refuse a rolled-back log whose key_check, head MAC and signature rows were
deleted and whose ledger_id row was changed (review round 5, R1b)."""

from __future__ import annotations

from pathlib import Path

import apsw

from tests.migrated_site import cli_here, cli_process, site_env


def _roll_back_keyless(db: Path, *more: str) -> None:
    """What an attacker with the database and without the key does: drop the no-delete
    trigger, delete the last event and every meta row only the key writes (key check,
    head MAC, signature, fingerprint key), run `more`, put the trigger back."""
    con = apsw.Connection(str(db))
    (sql,), = con.execute("SELECT sql FROM sqlite_master WHERE name = "
                          "'ledger_events_no_delete'").fetchall()
    con.execute("DROP TRIGGER ledger_events_no_delete")
    con.execute("DELETE FROM ledger_events WHERE seq = (SELECT max(seq) FROM ledger_events)")
    con.execute("DELETE FROM ledger_meta WHERE key IN ('head_mac', 'head_signature', "
                "'key_check', 'fp_key')")
    for statement in more:
        con.execute(statement)
    con.execute(sql)
    con.close()


def test_a_rolled_back_log_with_its_ledger_id_row_changed_is_refused(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    assert list(tmp_path.glob("config/ledger-head*"))  # the head mark, left in place
    _roll_back_keyless(tmp_path / "data" / "moltis.db",
                       "UPDATE ledger_meta SET value = 'another-ledger' WHERE key = 'ledger_id'")
    got = cli_process(env, "get", "server.port")
    assert got.returncode == 3, (got.returncode, got.stdout, got.stderr)
    assert "2000" not in got.stdout
    assert "ledger_id row" in got.stderr and "changed" in got.stderr, got.stderr


def test_a_ledger_whose_every_keyed_row_was_deleted_is_refused_by_its_head_mark(
        tmp_path: Path) -> None:
    """The sealed secret (its row), the key check, head MAC, signature and every snapshot
    deleted: nothing in the database proves the key any more, but the head mark beside
    the key names this very ledger, and only a keyed writer writes it."""
    env = site_env(tmp_path)
    from tests.test_read_proof import _keyed_store

    store = _keyed_store(env, tmp_path / "data" / "moltis.db")
    try:  # one writer: after its first commit, the mark is raised only at checkpoints
        for port in range(2000, 2006):
            store.ledger.edit({("server", "port"): port}, reason="r")
    finally:
        store.ledger.close()
    assert list(tmp_path.glob("config/ledger-head*"))
    _roll_back_keyless(tmp_path / "data" / "moltis.db", "DELETE FROM ledger_snapshots",
                       "DELETE FROM ledger_secrets")
    got = cli_process(env, "get", "server.port")
    assert got.returncode == 3, (got.returncode, got.stdout, got.stderr)
    assert got.stdout == ""
