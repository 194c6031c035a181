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
