"""A restore or an import killed (SIGKILL, a real CLI process) right after the copy
became the live ledger: the copy already has a history of its own (review r8's fix for
a splice of a replaced history's snapshots, which a crash between the swap and the fork
left open), and the operator's next step brings the ledger back to reads."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from ledger.engine.integrity_keys import HISTORY_ID
from tests.killed_cli import killed_cli
from tests.migrated_site import cli_process, site_env
from tests.test_past_read_proof import _edits

# crash trials: real CLI processes killed mid-restore or mid-import (run by .ci/run
# with the torture suite)
pytestmark = pytest.mark.torture


def _meta(db: Path, key: str) -> str | None:
    con = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = con.execute("SELECT value FROM ledger_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        con.close()


def _last_source(db: Path) -> str:
    con = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return str(con.execute("SELECT source FROM ledger_events ORDER BY seq DESC "
                               "LIMIT 1").fetchone()[0])
    finally:
        con.close()


# after the swap: before the head mark moved back to the restored head (the mark's
# first write), and after the mark (the staged copy, with its -wal, -shm and -journal,
# is removed before it is made, in case one was left over, and again after the swap)
@pytest.mark.parametrize(("kind", "name", "nth", "mark_moved"), [
    ("open", "ledger-head.hwm", 1, False), ("remove", ".restore-", 5, True)])
def test_a_restore_killed_after_the_swap_leaves_a_history_of_its_own(
        tmp_path: Path, kind: str, name: str, nth: int, mark_moved: bool) -> None:
    env, db, saved = backed_up_site(tmp_path, 2003)
    _edits(env, range(2004, 2014))  # on past the backup, snapshots every 4 events
    killed = killed_cli(env, kind, name, nth, "restore", "--force", str(saved))
    assert killed.returncode == -9, killed
    (kept,) = (db.parent / "backups").glob("replaced-*.db")
    # the live ledger is the backup's history, with the restore's own event on it...
    assert _last_source(db) == "restore"
    # ...and a history id of its own: the replaced history's snapshots (same key) never
    # check in it, also before any later step of the restore ran
    live = _meta(db, HISTORY_ID)
    assert live and live != (_meta(kept, HISTORY_ID) or "")
    assert live != (_meta(saved, HISTORY_ID) or "")
    if not mark_moved:
        # what the operator does next: the head mark still names the replaced head, so
        # reads refuse the restored one and say how to accept it; adopting it reads again
        refused = cli_process(env, "get", "server.port")
        assert refused.returncode != 0 and "sign-head --adopt" in refused.stderr, refused
        adopted = cli_process(env, "sign-head", "--adopt")
        assert adopted.returncode == 0, adopted
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "2003\n"), got
    assert cli_process(env, "verify").returncode == 0


def backed_up_site(tmp_path: Path, last_port: int) -> tuple[dict[str, str], Path, Path]:
    """A keyed site edited up to server.port = `last_port` and backed up to
    `tmp_path/saved.db`: (its env, its database, the backup)."""
    env = site_env(tmp_path)
    db = _edits(env, range(2002, last_port + 1))
    saved = tmp_path / "saved.db"
    assert cli_process(env, "backup", "-o", str(saved)).returncode == 0
    return env, db, saved


def bundled_site(tmp_path: Path, last_port: int) -> tuple[dict[str, str], Path]:
    """A keyed site under `tmp_path/source` edited up to server.port = `last_port`, and
    its bundle (with secrets) at `tmp_path/ledger.bundle`: (its env, the bundle)."""
    (tmp_path / "source").mkdir()
    env = site_env(tmp_path / "source")
    _edits(env, range(2002, last_port + 1))
    bundle = tmp_path / "ledger.bundle"
    made = cli_process(env, "bundle", "-o", str(bundle), "--with-secrets")
    assert made.returncode == 0, made
    return env, bundle


def test_an_import_killed_after_its_commit_leaves_a_history_of_its_own(tmp_path: Path) -> None:
    env, bundle = bundled_site(tmp_path, 2009)
    target = dict(env, MOLTIS_DATA_DIR=str(tmp_path / "target-data"),
                  MOLTIS_CONFIG_DIR=str(tmp_path / "target-config"))
    (tmp_path / "target-data").mkdir()
    (tmp_path / "target-config").mkdir()
    target_db = tmp_path / "target-data" / "moltis.db"
    killed = killed_cli(target, "open", "ledger-head.hwm", 1, "--db", str(target_db),
                        "import-bundle", str(bundle))
    assert killed.returncode == -9, killed
    source_db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    assert _last_source(target_db) == "import"
    live = _meta(target_db, HISTORY_ID)
    assert live and live != (_meta(source_db, HISTORY_ID) or "")
    got = cli_process(target, "--db", str(target_db), "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "2009\n"), got
    assert cli_process(target, "--db", str(target_db), "verify").returncode == 0


def test_a_restore_killed_before_the_swap_leaves_the_live_ledger_as_it_was(
        tmp_path: Path) -> None:
    env, db, saved = backed_up_site(tmp_path, 2003)
    _edits(env, range(2004, 2014))
    before = _meta(db, HISTORY_ID)
    # the copy is staged (signed, forked, snapshots sealed); killed as the replaced
    # ledger's keepsake is created, the last step before the swap
    killed = killed_cli(env, "open", "replaced-", 1, "restore", "--force", str(saved))
    assert killed.returncode == -9, killed
    assert _meta(db, HISTORY_ID) == before and _last_source(db) != "restore"
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "2013\n"), got
    assert cli_process(env, "verify").returncode == 0
    assert [*db.parent.glob(".moltis.db.restore-*.db")]  # the killed restore's staged copy
    again = cli_process(env, "restore", "--force", str(saved))  # the operator tries again
    assert again.returncode == 0, again
    assert not [*db.parent.glob(".moltis.db.restore-*")]  # removed: its process is gone
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "2003\n"), got
