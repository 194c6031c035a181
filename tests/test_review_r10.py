"""Review r10 (commit 994ca24: restore and import-bundle stage the copy, signed and
forked, before it replaces anything): attacks written as failing tests, with real files
and real CLI processes (no library code replaced).

`paused_cli` runs the real CLI entry point in a process of its own that, at the N-th
audit event of KIND on a file whose name holds NAME (as tests/killed_cli.py), runs
another real CLI process to completion before the operation goes on: another writer
acting at that exact step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.migrated_site import cli_process, site_env
from tests.test_past_read_proof import _edits

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def paused_cli(env: dict[str, str], kind: str, name: str, nth: int,
               meanwhile: list[str] | list[list[str]], *args: str
               ) -> subprocess.CompletedProcess[str]:
    """`moltis-ledger ARGS` in its own process; at the chosen step, `moltis-ledger
    MEANWHILE` (one command, or a list of them) runs, each in its own process with the
    same environment, and must succeed first."""
    if meanwhile and isinstance(meanwhile[0], str):
        meanwhile = [meanwhile]  # type: ignore[list-item]
    return subprocess.run([sys.executable, "-m", "tests.test_review_r10", kind, name,
                           str(nth), json.dumps(meanwhile), *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def _worker(kind: str, name: str, nth: int, meanwhile: list[list[str]], args: list[str]
            ) -> None:
    seen = 0
    busy = False

    def step(event_kind: str, path: Any) -> None:
        nonlocal seen, busy
        if busy or event_kind != kind or not isinstance(path, (str, bytes, os.PathLike)) \
                or name not in os.path.basename(os.fsdecode(path)):
            return
        seen += 1
        if seen == nth:
            busy = True
            for command in meanwhile:
                done = subprocess.run([sys.executable, "-m", "ledger", *command],
                                      capture_output=True, text=True, check=False)
                sys.stderr.write(f"[meanwhile] {command[0]} exit {done.returncode}: "
                                 f"{done.stdout}{done.stderr}\n")
                if done.returncode != 0:
                    os._exit(99)

    def hook(event: str, hook_args: tuple[Any, ...]) -> None:
        if event == "open" and len(hook_args) >= 3 and isinstance(hook_args[2], int) \
                and hook_args[2] & WRITE_FLAGS:
            step("open", hook_args[0])
        elif event == "os.remove":
            step("remove", hook_args[0])

    from ledger.cli import run

    sys.addaudithook(hook)
    sys.exit(run(args))


# -- finding 1: an acknowledged write made while a restore stages its copy -----------

def test_a_write_acknowledged_while_a_restore_stages_is_not_dropped(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    _edits(env, range(2002, 2006))
    saved = tmp_path / "saved.db"
    assert cli_process(env, "backup", "-o", str(saved)).returncode == 0
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
    env = site_env(tmp_path)
    db = _edits(env, range(2002, 2006))
    saved = tmp_path / "saved.db"
    assert cli_process(env, "backup", "-o", str(saved)).returncode == 0
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
    env = site_env(tmp_path)
    db = _edits(env, range(2002, 2004))
    saved = tmp_path / "saved.db"
    assert cli_process(env, "backup", "-o", str(saved)).returncode == 0
    (db.parent / ".moltis.db.restore-99999999999999999999.db").write_bytes(b"")
    restored = cli_process(env, "restore", str(saved))
    assert restored.returncode == 0, restored


# -- finding 4: a gateway holding the empty target across an import-bundle -----------

def test_a_gateway_open_across_an_import_writes_a_vouched_head(tmp_path: Path) -> None:
    import asyncio

    from tests.test_past_read_proof import _store

    (tmp_path / "source").mkdir()
    env = site_env(tmp_path / "source")
    _edits(env, range(2002, 2006))
    bundle = tmp_path / "ledger.bundle"
    made = cli_process(env, "bundle", "-o", str(bundle), "--with-secrets")
    assert made.returncode == 0, made
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

    (tmp_path / "source").mkdir()
    env = site_env(tmp_path / "source")
    _edits(env, range(2002, 2006))
    bundle = tmp_path / "ledger.bundle"
    assert cli_process(env, "bundle", "-o", str(bundle), "--with-secrets").returncode == 0
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


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5:])
