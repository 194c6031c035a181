"""Attacks through backups, restores and key rotation (review round 8, each written as a
failing test first), with real SQLite files and, for what an operator sees, a CLI
process of its own:

1. a restore forks the log, and the history it replaced (kept in backups/, under the
   same key) must never vouch for a past read of the restored one, also after a key
   rotation re-seals the kept backups: each copy has a history of its own;
2. backup and bundle of a log every read refuses are not reported good;
3. one planted secret row does not hold a key rotation back;
4. restore never swaps a readable ledger for a backup every read would refuse;
5. (review round 9) a restored or imported copy whose head is a tail appended without
   the key stays readable, and a process running across a restore of the same head
   takes the new history (the restore's own event moves the head).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from ledger.engine.vault import KeySource
from ledger.errors import LedgerError
from ledger.ops.backup import backup, restore
from ledger.stores.ledger_store import SqliteConfigStore
from tests.migrated_site import cli_process, site_env
from tests.test_past_read_proof import _edits, _rewrite_prefix, _store

# tampered backups and bundles restored or imported (tampering): run by .ci/run
pytestmark = pytest.mark.torture


@contextlib.contextmanager
def _opened(db: Path, env: dict[str, str]) -> Iterator[Any]:
    """The site's store in this process, with a snapshot every 4 events (as `_edits`)."""
    store = _store(db, bytes.fromhex(env["MOLTIS_LEDGER_KEY"]))
    store.ledger.snapshot_every = 4
    try:
        yield store
    finally:
        asyncio.run(store.close())


def _head(db: Path) -> int:
    con = apsw.Connection(str(db))
    try:
        return con.execute("SELECT max(seq) FROM ledger_events").fetchone()[0]
    finally:
        con.close()


# -- finding 1 -------------------------------------------------------------------------

def _forked(tmp_path: Path) -> tuple[dict[str, str], Path, int, Path]:
    """A keyed site (a snapshot every 4 events) backed up at its first events, written
    on to event 12 (history A), then restored from that backup: (env, database, the
    backup's head seq, the replaced history kept in backups/)."""
    env = site_env(tmp_path)
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    _edits(env, range(2002, 2003))
    saved = tmp_path / "saved.db"
    with _opened(db, env) as store:
        assert backup(store.ledger, saved).ok
        base = store.ledger.head_state().seq
    _edits(env, range(2003, 2003 + 12 - base))  # history A: snapshots at 4, 8, 12
    with _opened(db, env) as store:  # the operator goes back to the backup
        restore(store.ledger, saved, force=True)
    return env, db, base, next((db.parent / "backups").glob("replaced-*.db"))


def _plant_from(kept: Path, db: Path, first: int, snap_seq: int) -> None:
    """A writer without the key: `kept`'s events first..snap_seq and its snapshot at
    snap_seq (MAC'd by the ledger key) put in place of the live ledger's."""
    old = apsw.Connection(str(kept))
    rows = old.execute("SELECT seq, ts, actor, reason, source, kind, payload, prev_hash, "
                       "hash FROM ledger_events WHERE seq BETWEEN ? AND ?",
                       (first, snap_seq)).fetchall()
    snap = old.execute("SELECT seq, hash, state FROM ledger_snapshots WHERE seq = ?",
                       (snap_seq,)).fetchone()
    old.close()
    con = apsw.Connection(str(db))
    (trigger,), = con.execute("SELECT sql FROM sqlite_master WHERE name = "
                              "'ledger_events_no_update'").fetchall()
    con.execute("DROP TRIGGER ledger_events_no_update")
    for seq, *cols in rows:
        con.execute("UPDATE ledger_events SET ts=?, actor=?, reason=?, source=?, kind=?, "
                    "payload=?, prev_hash=?, hash=? WHERE seq=?", (*cols, seq))
    con.execute("DELETE FROM ledger_snapshots WHERE seq <= ?", (snap_seq,))
    con.execute("INSERT INTO ledger_snapshots (seq, hash, state) VALUES (?,?,?)", snap)
    con.execute(trigger)
    con.close()


def test_no_past_read_is_anchored_by_a_snapshot_of_the_history_a_restore_replaced(
        tmp_path: Path) -> None:
    env, db, base, kept = _forked(tmp_path)
    restored = _head(db)  # the backup's head and the restore's own event
    _edits(env, range(3003, 3003 + 16 - restored))  # history B: snapshots 4..16
    assert _head(db) == 16
    # An attacker with write access to the data dir and no key: history A's events
    # base+1..8 and A's snapshot at 8 (MAC'd by the same key) put in place of B's;
    # B's events 9..16 and its snapshots 12 and 16 left as they are
    _plant_from(kept, db, base + 1, 8)
    b_port_at_6 = 3003 + 6 - restored - 1
    head = cli_process(env, "get", "server.port")
    assert head.returncode == 0 and head.stdout == f"{3003 + 16 - restored - 1}\n", head
    past = cli_process(env, "get", "server.port", "--at", "6")
    # history A's value at 6 is not in the past of the head served: refused, or B's
    assert past.returncode != 0 or past.stdout == f"{b_port_at_6}\n", past
    with _opened(db, env) as store, pytest.raises(LedgerError):
        asyncio.run(store.load_raw_at(6))


def test_no_past_read_is_anchored_by_a_replaced_history_snapshot_after_key_rotation(
        tmp_path: Path) -> None:
    env, db, base, kept = _forked(tmp_path)
    rotated = cli_process(env, "key", "rotate", "--new-key-file", str(tmp_path / "new.key"))
    assert rotated.returncode == 0 and "1 ledger backup" in rotated.stdout, rotated
    env["MOLTIS_LEDGER_KEY"] = (tmp_path / "new.key").read_text().strip()
    _edits(env, range(3003, 3003 + 16 - _head(db)))  # history B, new key
    assert _head(db) == 16
    _plant_from(kept, db, base + 1, 8)
    assert cli_process(env, "verify").returncode == 3  # verify sees the break at 9
    past = cli_process(env, "get", "server.port", "--at", "6")
    assert past.returncode != 0 and "2006" not in past.stdout, past


def test_a_restore_gives_the_ledger_a_history_its_head_mac_vouches_for(
        tmp_path: Path) -> None:
    """The fix of finding 1: a restore gives the copy its own history id, from which its
    snapshot and head MAC keys are derived; the row is the head MAC's to vouch for, so
    changing it back (to revive the replaced history's snapshots) or removing it makes
    every keyed read refuse the head, and a restore of the same backup again is another
    history still."""
    env = site_env(tmp_path)
    data = Path(env["MOLTIS_DATA_DIR"])
    db = data / "moltis.db"
    _edits(env, range(2002, 2010))
    saved = tmp_path / "saved.db"
    with _opened(db, env) as store:
        assert backup(store.ledger, saved).ok
    histories = []
    for _ in range(2):
        with _opened(db, env) as store:
            assert restore(store.ledger, saved, force=True).report.ok
        con = apsw.Connection(str(db))
        (history,), = con.execute("SELECT value FROM ledger_meta WHERE key = 'history_id'")
        con.close()
        histories.append(history)
        assert cli_process(env, "get", "server.port").stdout == "2009\n"
        assert cli_process(env, "verify").returncode == 0
    assert len(set(histories)) == 2 and all(len(h) == 32 for h in histories)
    for change in (("UPDATE ledger_meta SET value = ? WHERE key = 'history_id'",
                    (histories[0],)),
                   ("DELETE FROM ledger_meta WHERE key = 'history_id'", ())):
        con = apsw.Connection(str(db))
        con.execute(*change)
        con.close()
        got = cli_process(env, "get", "server.port")
        assert got.returncode == 3 and "head MAC" in got.stderr, got
        con = apsw.Connection(str(db))
        con.execute("INSERT OR REPLACE INTO ledger_meta (key, value) VALUES ('history_id', ?)",
                    (histories[1],))
        con.close()
        assert cli_process(env, "get", "server.port").stdout == "2009\n"


# -- finding 2 -------------------------------------------------------------------------

def _rechain_all(db: Path, old: bytes, new: bytes) -> None:
    """A writer without the key: every payload holding `old` edited, the whole log
    re-chained from genesis to a new head (MAC, signature, snapshots, mark left)."""
    _rewrite_prefix(db, 1, _head(db), old, new)


def test_backup_and_bundle_of_a_rechained_log_are_not_reported_good(
        tmp_path: Path) -> None:
    env = site_env(tmp_path)
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    _edits(env, range(2002, 2008))
    _rechain_all(db, b'"value":2003', b'"value":6666')
    assert cli_process(env, "verify").returncode == 3
    assert cli_process(env, "get", "server.port").returncode == 3
    saved = cli_process(env, "backup", "-o", str(tmp_path / "b.db"))
    bundled = cli_process(env, "bundle", "-o", str(tmp_path / "x.bundle"))
    # what verify refuses is not written out as a good copy of the ledger
    assert saved.returncode != 0, saved
    assert bundled.returncode != 0, bundled


# -- finding 3 -------------------------------------------------------------------------

def test_a_planted_orphan_secret_row_does_not_block_key_rotation(tmp_path: Path) -> None:
    import os

    env = site_env(tmp_path)
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    _edits(env, range(2002, 2004))
    con = apsw.Connection(str(db))  # no trigger guards ledger_secrets: a plain insert
    con.execute("INSERT INTO ledger_secrets (ref, sealed, created_seq) VALUES (?, ?, 1)",
                ("s-planted", b"\x01" + os.urandom(40)))
    con.close()
    rotated = cli_process(env, "key", "rotate", "--new-key-file", str(tmp_path / "new.key"))
    # the operator rotating away from a leaked key is not stopped by a row no event
    # references (verify names it as orphaned; it holds no secret of this ledger)
    assert rotated.returncode == 0, rotated


# -- finding 4 -------------------------------------------------------------------------

def test_restore_of_an_unvouched_backup_leaves_the_live_ledger_in_place(
        tmp_path: Path) -> None:
    import glob
    import shutil

    env = site_env(tmp_path)
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    _edits(env, range(2002, 2008))
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    for f in glob.glob(f"{db}*"):
        shutil.copy(f, pristine)
    _rechain_all(db, b'"value":2003', b'"value":6666')
    # backup writes the evidence copy of a ledger every read refuses, and says so
    assert cli_process(env, "backup", "-o", str(tmp_path / "b.db")).returncode == 3
    assert (tmp_path / "b.db").exists()
    for f in glob.glob(f"{db}*"):
        Path(f).unlink()
    for f in pristine.iterdir():  # the live ledger is the good one again
        shutil.copy(f, db.parent)
    assert cli_process(env, "get", "server.port").stdout == "2007\n"
    restored = cli_process(env, "restore", "--force", str(tmp_path / "b.db"))
    assert restored.returncode == 3, restored  # it says the result does not verify ...
    now = cli_process(env, "get", "server.port")
    # ... but the good ledger it had is no longer what is served
    assert (now.returncode, now.stdout) == (0, "2007\n"), now


def _keyless_edit(db: Path, tmp_path: Path, port: int) -> None:
    """A writer without the ledger key appends one event (allowed by design: served,
    with a warning, until `sign-head --adopt`)."""
    async def write() -> None:
        store = SqliteConfigStore(db, keys=KeySource(key_file=tmp_path / "no-such.key",
                                                     env={}))
        try:
            await store.edit({("server", "port"): port}, actor="x@y")
        finally:
            await store.close()

    asyncio.run(write())


# -- review r9, finding 1: a copy whose head is a tail appended without the key --

def test_restore_of_a_backup_with_a_keyless_tail_stays_readable(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    _edits(env, range(2002, 2006))
    _keyless_edit(db, tmp_path, 4444)  # one event appended without the key
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "4444\n"), got  # served, with a warning
    saved = cli_process(env, "backup", "-o", str(tmp_path / "b.db"))
    assert saved.returncode == 0, saved  # backup calls it a good copy
    restored = cli_process(env, "restore", "--force", str(tmp_path / "b.db"))
    # the warning that the copy's head is left unsigned names the ledger, not the
    # restore's staged file
    assert f"{db}: not signing event" in restored.stderr, restored
    assert ".restore-" not in restored.stderr, restored
    # what was served before the restore is served after it (with the same warning),
    # or at the least the operator can vouch for it once verify passes
    now = cli_process(env, "get", "server.port")
    adopt = cli_process(env, "sign-head", "--adopt")
    assert (now.returncode, now.stdout) == (0, "4444\n") or adopt.returncode == 0, (now, adopt)


def test_import_of_a_bundle_with_a_keyless_tail_stays_readable(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    _edits(env, range(2002, 2006))
    _keyless_edit(db, tmp_path, 4444)
    bundled = cli_process(env, "bundle", "--with-secrets", "-o",
                          str(tmp_path / "x.bundle"))
    assert bundled.returncode == 0, bundled
    other = dict(env, MOLTIS_DATA_DIR=str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    cli_process(other, "import-bundle", str(tmp_path / "x.bundle"))
    now = cli_process(other, "get", "server.port")
    adopt = cli_process(other, "sign-head", "--adopt")
    assert (now.returncode, now.stdout) == (0, "4444\n") or adopt.returncode == 0, (now, adopt)


# -- review r9, finding 2: a process running across a restore of the same head --

def test_a_running_writer_across_a_restore_of_the_same_head_writes_a_readable_head(
        tmp_path: Path) -> None:
    from tests.test_restore_backup_attacks import _store

    env = site_env(tmp_path)
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    _edits(env, range(2002, 2006))
    assert cli_process(env, "backup", "-o", str(tmp_path / "b.db")).returncode == 0
    gateway = _store(db, bytes.fromhex(env["MOLTIS_LEDGER_KEY"]))  # a running gateway

    async def across_restore() -> None:
        try:
            assert (await gateway.load_raw()).server.port == 2005
            # the operator restores the newest backup (the hint every refusal prints);
            # its head is the live one's, so no --force is needed
            restored = cli_process(env, "restore", str(tmp_path / "b.db"))
            assert restored.returncode == 0, restored
            await gateway.edit({("server", "port"): 7777}, actor="gw@x")  # acknowledged
        finally:
            await gateway.close()

    asyncio.run(across_restore())
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "7777\n"), got
