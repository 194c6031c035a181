"""Review round 9 (attacker's view of the changes since fb4fd4b): each finding a
failing test first, with real SQLite files and CLI processes; all pass since the
restore's own event moves the head and every copy keeps a MAC that checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ledger.engine.vault import KeySource
from ledger.stores.ledger_store import SqliteConfigStore
from tests.migrated_site import cli_process, site_env
from tests.test_past_read_proof import _edits


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


# -- finding 1 -------------------------------------------------------------------------

def test_restore_of_a_backup_with_a_keyless_tail_stays_readable(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"
    _edits(env, range(2002, 2006))
    _keyless_edit(db, tmp_path, 4444)  # one event appended without the key
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "4444\n"), got  # served, with a warning
    saved = cli_process(env, "backup", "-o", str(tmp_path / "b.db"))
    assert saved.returncode == 0, saved  # backup calls it a good copy
    cli_process(env, "restore", "--force", str(tmp_path / "b.db"))
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


# -- finding 2 -------------------------------------------------------------------------

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
