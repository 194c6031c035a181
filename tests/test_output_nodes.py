"""No output path is ever renamed over a FIFO, device node or socket (review r6, F2).

`bundle -o`, `export -o DIR`, `unseal-backup -o DIR` and every rename-based writer
(`replace_file` / `write_private`) refuse by name whatever special node is at the
target, and leave it as it was. The nodes are made inside the test's own tmp folder
(a device node only as root, who can make one): never the system's /dev.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from ledger.errors import UnsafePathError
from ledger.files.safe_io import replace_file, write_private
from tests.migrated_site import cli_here, site_env


def _nodes(where: Path) -> list[Path]:
    """A FIFO, a bound UNIX socket and (as root) a character device equal to /dev/null,
    all in `where`."""
    where.mkdir(exist_ok=True)
    fifo = where / "fifo"
    os.mkfifo(fifo)
    sock_path = where / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()  # the node stays
    nodes = [fifo, sock_path]
    if os.geteuid() == 0:
        dev = where / "null-device"
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        nodes.append(dev)
    return nodes


@pytest.mark.parametrize("writer", [write_private, replace_file])
def test_rename_writers_refuse_a_special_node_at_the_target(tmp_path: Path, writer: object
                                                            ) -> None:
    for node in _nodes(tmp_path / "out"):
        kind = stat.S_IFMT(os.lstat(node).st_mode)
        with pytest.raises(UnsafePathError, match=r"refusing to write.*not a regular file"):
            writer(node, b"data")  # type: ignore[operator]
        assert stat.S_IFMT(os.lstat(node).st_mode) == kind
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_bundle_export_and_unseal_never_replace_a_special_node(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    replaced = []
    for node in _nodes(tmp_path / "out"):
        kind = stat.S_IFMT(os.lstat(node).st_mode)
        done = cli_here(env, "bundle", "-o", str(node))
        assert done.returncode != 0 and "not a regular file" in done.stderr, done.stderr
        if stat.S_IFMT(os.lstat(node).st_mode) != kind:
            replaced.append(f"bundle -o {node.name}")
    exported = tmp_path / "exported"
    exported.mkdir()
    os.mkfifo(exported / "provider_keys.json")
    done = cli_here(env, "export", "-o", str(exported), "--reveal-secrets")
    assert done.returncode != 0 and "provider_keys.json" in done.stderr, done.stderr
    if not stat.S_ISFIFO(os.lstat(exported / "provider_keys.json").st_mode):
        replaced.append("export -o DIR")
    backups = sorted((tmp_path / "data" / "backups").glob("migrate-*"))
    assert backups, "the migration made a backup"
    unsealed = tmp_path / "unsealed"
    unsealed.mkdir()
    os.mkfifo(unsealed / "moltis.toml")
    done = cli_here(env, "unseal-backup", str(backups[0]), "-o", str(unsealed))
    assert done.returncode != 0 and "moltis.toml" in done.stderr, done.stderr
    if not stat.S_ISFIFO(os.lstat(unsealed / "moltis.toml").st_mode):
        replaced.append("unseal-backup -o DIR")
    assert not replaced, f"replaced by a regular file: {replaced}"
    # a regular file (or nothing) at the name is still written
    assert cli_here(env, "bundle", "-o", str(tmp_path / "out" / "b.bundle")).returncode == 0
