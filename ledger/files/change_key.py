"""What tells, without parsing it, that a file someone edits by hand (moltis.toml)
changed since it was last looked at, and whether its writer is done with it: the
running gateway's and `watch`'s check for a hand edit, polled a few times a second."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Final

from blake3 import blake3

from ledger.files.safe_io import MAX_FILE_BYTES

__all__ = ["SETTLE_NS", "file_stat_key", "settled"]

SETTLE_NS: Final = 1_000_000_000


def settled(key: tuple[int, ...] | None) -> bool:
    """A file last modified at least a second ago: an editor that writes in place
    (truncate, then write) is done with it, so a read cannot catch half a file and
    import the missing half as removed keys. The modification time, not ctime: a writer
    that puts it back (`cp -p`, `rsync -t`) does so after the last byte."""
    return key is None or time.time_ns() - key[2] >= SETTLE_NS


def file_stat_key(path: Path) -> tuple[int, ...] | None:
    """What tells that a file changed: (inode, size, mtime, ctime, a digest of its
    bytes). Not the metadata alone: an edit in place of the same length whose
    modification time was put back (`cp -p`, `rsync -t --inplace`, `touch -r`) keeps
    the first three, and ctime is as coarse as the file system's clock. Reading a
    configuration file of a few kilobytes costs microseconds per poll."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # no wait on a FIFO
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        digest = b""
        if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_FILE_BYTES:
            with os.fdopen(os.dup(fd), "rb") as f:
                digest = blake3(f.read(MAX_FILE_BYTES + 1)).digest(length=16)
    except OSError:
        return None
    finally:
        os.close(fd)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
            int.from_bytes(digest, "big"))
