"""Create a new private file without following symlinks (backups, restored ledgers).

`create_private_new(path)` opens `path` with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 from
the first byte (the umask cannot widen it), after checking the directory it goes in:
created 0700 if missing, and refused if it is a symlink or writable by others (another
user could otherwise swap names in it between our steps). The caller gets the open fd.
Issue 14's general helpers live in `safe_io`; this one stays small, for ledger files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ledger.errors import InputError
from ledger.files.dirs import ensure_private_dir

__all__ = ["check_private_dir", "create_private_new"]


def check_private_dir(folder: Path) -> None:
    """Create `folder` (0700) if missing; refuse a symlink or a folder others may write."""
    ensure_private_dir(folder)
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise InputError(f"{folder}: not a plain directory (a symlink?); choose another "
                         "place for ledger files")
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise InputError(f"{folder}: other users can write in this directory; choose a "
                         "private one (mode 0700) for ledger files")


def create_private_new(path: Path) -> int:
    """A new file at `path`, 0600, never through a symlink; FileExistsError if taken."""
    check_private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.fchmod(fd, 0o600)
    return fd
