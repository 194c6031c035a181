"""Review r10 (commit 994ca24: restore and import-bundle stage the copy, signed and
forked, before it replaces anything): attacks written as failing tests, with real files
and real CLI processes (no library code replaced).

`paused_cli` (tests/killed_cli.py) runs the real CLI entry point in a process of its
own that, at the N-th audit event of KIND on a file whose name holds NAME, runs another
real CLI process to completion before the operation goes on: another writer acting at
that exact step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.killed_cli import paused_cli
from tests.migrated_site import cli_process
from tests.test_copy_crash import backed_up_site, bundled_site

# crash and concurrency trials: real CLI processes killed or paused mid-restore or
# mid-import (run by .ci/run with the torture suite)
pytestmark = pytest.mark.torture

# -- finding 1: an acknowledged write made while a restore stages its copy -----------

def test_a_write_acknowledged_while_a_restore_stages_is_not_dropped(tmp_path: Path) -> None:
    env, _db, saved = backed_up_site(tmp_path, 2005)
    # the operator restores the newest backup (same head: no --force needed); while the
    # copy is staged beside the ledger, the gateway's writer commits (acknowledged)
    restored = paused_cli(env, "open", ".restore-", 1,
                          ["set", "server.port", "7777", "--reason", "gateway"],
                          "restore", str(saved))
    assert "[meanwhile] set exit 0" in restored.stderr, restored
    got = cli_process(env, "get", "server.port")
    # the acknowledged write is in the live ledger, or the restore refused (it would drop
    # an event the backup does not have: the rule --force exists for)
    assert restored.returncode != 0 or (got.returncode, got.stdout) == (0, "7777\n"), \
        (restored, got)


# -- finding 2: the restore lowers the head mark below a head vouched after the swap --

def _put_back(copy: Path, db: Path) -> None:
    """What someone who can write the data dir (not the key) does: an older genuine copy
    of the ledger put in place of the live one."""
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(copy.read_bytes())


def test_the_restore_does_not_lower_the_mark_below_a_head_written_after_its_swap(
        tmp_path: Path) -> None:
    env, db, saved = backed_up_site(tmp_path, 2005)
    early = tmp_path / "early.db"
    # after the swap (the staged file's removal: the 5th), before the mark is moved:
    # someone keeps a copy of the restored ledger, then the gateway writes on it (its
    # checkpoint raises the mark to the new head)
    restored = paused_cli(env, "remove", ".restore-", 5,
                          [["backup", "-o", str(early)],
                           ["set", "server.port", "7777", "--reason", "gateway"]],
                          "restore", str(saved))
    assert restored.returncode == 0, restored
    assert "[meanwhile] set exit 0" in restored.stderr, restored
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "7777\n"), got
    _put_back(early, db)  # the acknowledged write rolled back
    replayed = cli_process(env, "get", "server.port")
    # refused as any copy older than the mark is (the mark names the gateway's head)
    assert replayed.returncode != 0 and "sign-head --adopt" in replayed.stderr, replayed


# -- finding 3: a stray staged name blocks every restore ------------------------------

def test_a_stray_staged_name_does_not_block_restore(tmp_path: Path) -> None:
    env, db, saved = backed_up_site(tmp_path, 2003)
    (db.parent / ".moltis.db.restore-99999999999999999999.db").write_bytes(b"")
    restored = cli_process(env, "restore", str(saved))
    assert restored.returncode == 0, restored


# -- finding 4: a gateway holding the empty target across an import-bundle -----------

def test_a_gateway_open_across_an_import_writes_a_vouched_head(tmp_path: Path) -> None:
    import asyncio

    from tests.test_past_read_proof import _store

    env, bundle = bundled_site(tmp_path, 2005)
    (tmp_path / "data").mkdir()
    (tmp_path / "config").mkdir()
    target = dict(env, MOLTIS_DATA_DIR=str(tmp_path / "data"),
                  MOLTIS_CONFIG_DIR=str(tmp_path / "config"))
    gateway = _store(tmp_path / "data" / "moltis.db", bytes.fromhex(env["MOLTIS_LEDGER_KEY"]))
    failures: list[str] = []

    async def across_import() -> None:
        try:
            await gateway.load_raw()  # the gateway runs on the new, empty ledger
            imported = cli_process(target, "import-bundle", str(bundle))
            assert imported.returncode == 0, imported
            assert (await gateway.load_raw()).server.port == 2005
            await gateway.edit({("server", "port"): 7777}, actor="gw@x")  # acknowledged
            try:
                await gateway.edit(
                    {("providers", "openai", "api_key"): "sk-new-0123456789abcdef"},
                    actor="gw@x")
            except Exception as err:  # what the gateway's caller sees
                failures.append(f"{type(err).__name__}: {err}")
        finally:
            await gateway.close()

    asyncio.run(across_import())
    verified = cli_process(target, "verify")
    assert (verified.returncode, failures) == (0, []), (verified.stderr, failures)
    got = cli_process(target, "get", "server.port")
    assert (got.returncode, got.stdout, got.stderr) == (0, "7777\n", ""), got


# -- finding 5: a killed import's staging copy is never removed ----------------------

def test_a_killed_import_leaves_no_staging_copy_behind(tmp_path: Path) -> None:
    from tests.killed_cli import killed_cli

    env, bundle = bundled_site(tmp_path, 2005)
    temp = tmp_path / "tmp"
    temp.mkdir()
    targets = []
    for name in ("a", "b"):
        (tmp_path / name / "data").mkdir(parents=True)
        (tmp_path / name / "config").mkdir()
        targets.append(dict(env, MOLTIS_DATA_DIR=str(tmp_path / name / "data"),
                            MOLTIS_CONFIG_DIR=str(tmp_path / name / "config"), TMPDIR=str(temp)))
    # killed as the staging directory is removed, after the copy committed
    killed = killed_cli(targets[0], "remove", "staged.db", 1, "import-bundle", str(bundle))
    assert killed.returncode == -9, killed
    got = cli_process(targets[0], "get", "server.port")
    assert (got.returncode, got.stdout) == (0, "2005\n"), got
    again = cli_process(targets[1], "import-bundle", str(bundle))  # the operator's next import
    assert again.returncode == 0, again
    assert not [*temp.glob("moltis-ledger-import-*/staged.db*")]
