"""A restore replaces the live ledger within one write turn, held through the write
queue beside it (`<moltis.db>.lock`), so no writer of another process commits between
its head check and the swap. Where the queue cannot be used (a file another user
planted at its name: writers then go without it), the turn held nobody, and a write
acknowledged meanwhile could be replaced by the restore: the restore is refused
instead, naming the file (the reread of this session's change)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.migrated_site import cli_here, site_env


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's file needs root")
def test_a_restore_without_a_usable_write_queue_is_refused(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    db = tmp_path / "data" / "moltis.db"
    saved = tmp_path / "saved.db"
    assert cli_here(env, "backup", "-o", str(saved)).returncode == 0
    assert cli_here(env, "set", "server.port", "2001").returncode == 0
    queue = Path(f"{db}.lock")
    queue.unlink(missing_ok=True)
    queue.write_bytes(b"")
    os.chown(queue, 4321, 4321)  # another user's file: writers go without the queue
    before = db.read_bytes()
    refused = cli_here(env, "restore", "--force", str(saved))
    assert refused.returncode != 0, refused.stdout
    assert str(queue) in refused.stderr
    assert db.read_bytes() == before  # nothing replaced


# A writer (run as its own process) whose write turn is held until another process
# waits in the ledger's write queue (`/proc/locks` lists a blocked flock on its file):
# then it writes the config file as a backend switch would, records it as in step with
# the ledger (`import.*` rows, no event) and commits.
_SYNC_WHILE_RESTORE_WAITS = r"""
import os, sys, time
from pathlib import Path
from ledger import open_store
from ledger.ops.hand_edit import file_sync_meta

store = open_store()
ledger = store.ledger
config = Path(os.environ["MOLTIS_CONFIG_DIR"]) / "moltis.toml"
queue = Path(os.environ["MOLTIS_DATA_DIR"]) / "moltis.db.lock"
written = config.read_bytes().replace(b"13131", b"20000")
inode = f":{os.stat(queue).st_ino} "

def someone_waits() -> bool:
    with open("/proc/locks") as locks:
        return any("->" in line and inode in line for line in locks)

def build(state, sealer):
    print("held", flush=True)
    deadline = time.monotonic() + 60
    while not someone_waits():
        if time.monotonic() > deadline:
            sys.exit("nobody waited for the write turn")
        time.sleep(0.01)
    config.write_bytes(written)
    return []

ledger.append(build, meta=file_sync_meta(ledger, config, data=written), source="import")
print("recorded", flush=True)
"""


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_a_file_sync_recorded_while_a_restore_waits_for_its_turn_is_kept(
        tmp_path: Path) -> None:
    """The live ledger's record of the config file (`import.*` rows: the file as last
    imported or written in step) is carried into the restored ledger, so a file the
    live ledger already had in step is not imported over the restore (review r15). A
    backend switch records it without an event; if it does so while the restore waits
    for its write turn, the restore must carry that record, not the one it read
    before: with the older one, the next command took the switch's file for a hand
    edit and imported it, undoing the restore (port 20000 instead of 13131)."""
    import subprocess
    import sys

    env = site_env(tmp_path)
    saved = tmp_path / "saved.db"
    assert cli_here(env, "backup", "-o", str(saved)).returncode == 0
    assert cli_here(env, "set", "server.port", "20000").returncode == 0
    writer = subprocess.Popen([sys.executable, "-c", _SYNC_WHILE_RESTORE_WAITS], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "held"
        restored = subprocess.run([sys.executable, "-m", "ledger", "restore", "--force",
                                   str(saved)], env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
        out, err = writer.communicate(timeout=120)
    finally:
        writer.kill()
    assert writer.returncode == 0 and out.strip() == "recorded", err
    assert restored.returncode == 0, restored.stderr
    got = cli_here(env, "get", "server.port")
    assert got.stdout.strip() == "13131", (got.stdout, got.stderr)
    log = cli_here(env, "--json", "log")
    assert '"source": "import"' not in log.stdout.split('"source": "restore"')[0]
