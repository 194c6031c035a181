"""What tells the running gateway (store.file_sync, called by watch) and `watch` on a
read-only open that moltis.toml changed (review B, finding 6): the key is over the
file's bytes, not only (inode, size, mtime), so a same-size edit in place whose
modification time was kept (`cp -p`, `rsync -t --inplace`, `touch -r`) is imported too."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ledger.files.change_key import file_stat_key, settled
from ledger.ops.open_store import open_store
from tests.conftest import run
from tests.operator import make_site


def edit_keeping_mtime(path: Path, old: bytes, new: bytes) -> None:
    """Same inode, same size, the modification time put back."""
    before = path.stat()
    text = path.read_bytes()
    assert old in text and len(old) == len(new)
    with open(path, "r+b") as f:
        f.write(text.replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)


def test_gateway_notices_a_same_size_hand_edit_whose_mtime_was_kept(tmp_path):
    site = make_site(tmp_path)
    site.ok("migrate")
    # written an hour ago: the edit below keeps that time, so the file counts as settled
    # at once (a file modified within the last second is left to its writer)
    hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(site.toml, ns=(hour_ago, hour_ago))
    store = open_store()  # the gateway's way in
    try:
        assert run(store.load_raw()).server.port == 13131
        assert store.file_sync is not None
        edit_keeping_mtime(site.toml, b"port = 13131", b"port = 13132")
        store.file_sync()
        assert run(store.load_raw()).server.port == 13132, (
            "the running gateway never imported the hand edit (a CLI command would)")
    finally:
        store.ledger.close()


def test_the_file_key_changes_with_the_bytes_alone(tmp_path):
    path = tmp_path / "moltis.toml"
    path.write_bytes(b"[server]\nport = 13131\n")
    key = file_stat_key(path)
    assert key is not None and key == file_stat_key(path)
    edit_keeping_mtime(path, b"13131", b"13132")
    assert file_stat_key(path) != key
    assert settled(file_stat_key(path)) == settled(key)  # settling still reads the mtime
    assert file_stat_key(tmp_path / "missing.toml") is None
