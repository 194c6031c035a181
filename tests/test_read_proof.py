"""What a read serves is proven against the chain, on every load and every catch-up.

An attacker with write access to the database file but not the key can edit an event's
payload in place (the hash columns left as they were: no re-chaining), delete the last
events, or swap the history under a running reader. A read must recompute the chain
over what it replays (from a MAC'd snapshot or genesis) and check it ends at the head it
serves; a running reader whose history went backwards or was replaced runs the open-time
checks again (head mark, head MAC), so a legitimate `restore` is followed and a rollback
is refused. Real files, the real CLI in its own processes for the reads and for the
writes a running reader must follow; the set-ups before a reader opens run it in this
process (tests/migrated_site.py). Review round 5, R2 and R4.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import apsw
import pytest

from ledger.engine.vault import KeySource
from ledger.errors import LedgerError
from ledger.stores.ledger_store import SqliteConfigStore
from tests.migrated_site import cli_here, cli_process, site_env, truncate_last_event


def _db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "moltis.db"


def _edit_payload_in_place(db: Path, seq_sql: str, old: str, new: str) -> None:
    """An attacker without the key: drop the no-update trigger, rewrite one event's
    payload, leave every hash column as it was, put the trigger back."""
    con = apsw.Connection(str(db))
    (sql,), = con.execute("SELECT sql FROM sqlite_master WHERE name = "
                          "'ledger_events_no_update'").fetchall()
    con.execute("DROP TRIGGER ledger_events_no_update")
    changed = con.execute(
        "UPDATE ledger_events SET payload = CAST(replace(CAST(payload AS TEXT), ?, ?) "
        f"AS BLOB) WHERE seq = ({seq_sql}) RETURNING seq", (old, new)).fetchall()
    con.execute(sql)
    con.close()
    assert changed


def _keyed_store(env: dict[str, str], db: Path) -> SqliteConfigStore:
    return SqliteConfigStore(db, keys=KeySource(key=bytes.fromhex(env["MOLTIS_LEDGER_KEY"]),
                                                env={}))


def _port(store: SqliteConfigStore) -> object:
    """What a running reader serves next, or the error it refuses with."""
    try:
        return asyncio.run(store.load_raw()).server.port
    except LedgerError as err:
        return err


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
@pytest.mark.parametrize("which", ["head", "inner"])
def test_get_refuses_an_event_payload_edited_in_place(tmp_path: Path, keyed: bool,
                                                      which: str) -> None:
    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    if which == "head":
        _edit_payload_in_place(_db(tmp_path), "SELECT max(seq) FROM ledger_events",
                               "3000", "6666")
    else:  # an older event of the tail a read replays; the head row is untouched
        _edit_payload_in_place(_db(tmp_path), "SELECT max(seq) - 1 FROM ledger_events",
                               "2000", "6666")
        assert cli_here(env, "set", "server.port", "4000").returncode != 0  # no write on it
    if not keyed:
        env.pop("MOLTIS_LEDGER_KEY")
    assert cli_here(env, "verify").returncode == 3
    # `get` (and `--json get`) in a process of their own: the fast path the operator runs
    every_read = ((cli_process, ("get", "server.port")), (cli_here, ("show",)),
                  (cli_process, ("--json", "get", "server.port")))
    for cli, argv in every_read if keyed and which == "head" else every_read[:1]:
        got = cli(env, *argv)
        assert got.returncode == 3, (argv, got.returncode, got.stdout, got.stderr)
        assert "6666" not in got.stdout + got.stderr
        # named where the command reports errors (stderr; --json: the error object)
        assert "changed after it was written" in got.stdout + got.stderr, got


def test_a_running_reader_refuses_an_event_edited_before_it_catches_up(
        tmp_path: Path) -> None:
    env = site_env(tmp_path)
    assert cli_here(env, "set", "server.port", "2000").returncode == 0
    gateway = _keyed_store(env, _db(tmp_path))
    try:
        assert _port(gateway) == 2000
        assert cli_process(env, "set", "server.port", "3000").returncode == 0
        _edit_payload_in_place(_db(tmp_path), "SELECT max(seq) FROM ledger_events",
                               "3000", "6666")
        served = _port(gateway)
        assert isinstance(served, LedgerError), served
        assert "changed after it was written" in str(served)
    finally:
        gateway.ledger.close()


def test_a_running_keyed_reader_refuses_a_log_rolled_back_under_it(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    gateway = _keyed_store(env, _db(tmp_path))
    try:
        assert _port(gateway) == 3000
        truncate_last_event(_db(tmp_path))  # the MAC row, head mark and mirror untouched
        assert cli_process(env, "get", "server.port").returncode == 3  # a fresh open refuses
        served = _port(gateway)
        assert isinstance(served, LedgerError), served  # and so does the running reader
        assert _port(gateway) != 2000  # every later read too
    finally:
        gateway.ledger.close()


def test_a_running_keyed_reader_follows_a_legitimate_restore(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    assert cli_here(env, "set", "server.port", "2000").returncode == 0
    backup = tmp_path / "before.db"
    assert cli_here(env, "backup", "-o", str(backup)).returncode == 0
    assert cli_here(env, "set", "server.port", "3000").returncode == 0
    gateway = _keyed_store(env, _db(tmp_path))
    try:
        assert _port(gateway) == 3000
        restored = cli_process(env, "restore", "--force", str(backup))
        assert restored.returncode == 0, restored.stderr
        assert _port(gateway) == 2000  # the restore is what the operator asked for
        assert cli_process(env, "set", "server.port", "4000").returncode == 0
        assert _port(gateway) == 4000
    finally:
        gateway.ledger.close()


def test_rebuild_snapshots_never_seals_a_log_edited_in_place(tmp_path: Path) -> None:
    """Snapshots are trusted over the events they cover: sealing a state replayed from
    an edited event would launder the edit into every later keyed read."""
    env = site_env(tmp_path)
    db = _db(tmp_path)
    store = _keyed_store(env, db)
    store.ledger.snapshot_every = 4
    try:
        store.ledger.edit({("server", "port"): 2000}, reason="old value")
        for n in range(8):
            store.ledger.edit({("server", "host"): f"h{n}.example"}, reason="later")
        sealed_before = store.ledger.backend.snapshot_seqs()
        assert sealed_before
        _edit_payload_in_place(db, "SELECT min(seq) FROM ledger_events WHERE CAST(payload "
                               "AS TEXT) LIKE '%2000%'", "2000", "6666")
        with pytest.raises(LedgerError, match="changed after it was written"):
            store.ledger.rebuild_snapshots()
        assert store.ledger.backend.snapshot_seqs() == sealed_before
    finally:
        store.ledger.close()
    got = cli_process(env, "get", "server.port")
    assert "6666" not in got.stdout + got.stderr


def test_a_running_keyed_reader_refuses_a_replaced_log_past_the_catch_up_limit(
        tmp_path: Path) -> None:
    """A head far ahead is reloaded from a snapshot rather than caught up event by
    event; the reload must still be of the history this reader served, continued."""
    from ledger.core.chain import link
    from ledger.core.events import Change, ChangePayload, encode_payload, now_us
    from ledger.engine.ledger import _CATCH_UP_LIMIT

    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    db = _db(tmp_path)
    gateway = _keyed_store(env, db)
    try:
        assert _port(gateway) == 3000
        truncate_last_event(db)
        con = apsw.Connection(str(db))
        seq, prev = con.execute("SELECT seq, hash FROM ledger_events ORDER BY seq DESC "
                                "LIMIT 1").fetchone()
        rows = []
        for n in range(_CATCH_UP_LIMIT + 4):  # re-chained: anyone can compute the chain
            payload = encode_payload(ChangePayload(changes=(
                Change("set", ("server", "port"), 6666 if n == _CATCH_UP_LIMIT + 3
                       else 7000 + n % 100),)))
            ts, seq = now_us(), seq + 1
            h = link(prev, seq, ts, "mallory", "", "api", "change", payload)
            rows.append((seq, ts, "mallory", "", "api", "change", payload, prev, h))
            prev = h
        with con:
            con.executemany("INSERT INTO ledger_events (seq, ts, actor, reason, source, "
                            "kind, payload, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)",
                            rows)
        con.close()
        assert cli_process(env, "get", "server.port").returncode == 3  # a fresh open refuses
        served = _port(gateway)
        assert isinstance(served, LedgerError), served
    finally:
        gateway.ledger.close()
