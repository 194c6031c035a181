"""The gateway after an older copy of its ledger was put back: the head mark refuses the
copy, and the gateway serves the newest state something proves (the MAC'd head mirror),
never the older copy and never a crash."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from ledger.errors import BackendUnavailableError
from ledger.ops.mirror import MIRROR_NAME, slot_paths
from ledger.ops.open_store import open_store
from tests.operator import Site, make_site


def _put_back_older_copy(tmp_path: Path) -> Site:
    site = make_site(tmp_path)
    site.ok("migrate")
    site.ok("set", "server.port", "8001", "--reason", "a")
    copy = tmp_path / "old.db"
    shutil.copy(site.db, copy)
    site.ok("set", "server.port", "8002", "--reason", "b")
    site.ok("set", "server.port", "8003", "--reason", "c")
    for suffix in ("-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)
    shutil.copy(copy, site.db)
    return site


def test_the_gateway_serves_the_mirror_not_an_older_copy_put_back(tmp_path: Path) -> None:
    site = _put_back_older_copy(tmp_path)
    assert site.run("get", "server.port").code == 3  # the CLI refuses the copy, named
    store = open_store()
    cfg = asyncio.run(store.load_effective())
    assert cfg.server.port == 8003
    assert "could not be used" in (store.read_only_reason or "")


def test_without_a_mirror_the_gateway_refuses_rather_than_serve_the_copy(tmp_path: Path
                                                                         ) -> None:
    site = _put_back_older_copy(tmp_path)
    for slot in slot_paths(site.data_dir / MIRROR_NAME):
        slot.unlink(missing_ok=True)
    with pytest.raises(BackendUnavailableError, match="older than one this key has seen"):
        open_store()
