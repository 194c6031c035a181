"""What a restore or an import killed part-way leaves behind, removed by the next one.

A restore stages its copy beside the ledger (`.NAME.restore-PID.db`); an import stages
the bundle in a private temporary directory (`moltis-ledger-import-PID-*`). Either
holds a whole ledger: its sealed secrets, MAC'd snapshots and a signed head. A killed
process cannot remove its own, so the next restore or import removes those whose
process is gone. A name whose number is no process id (planted, or damaged) is left
alone rather than stopping the operator's repair; so is anything of another user or
kind. A process of another PID namespace sharing the directory looks gone: its staged
file, removed under it, then fails its own restore loudly (SQLite refuses to write a
database unlinked while open), never a swap of half a copy."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import Final

__all__ = ["import_stage_prefix", "remove_files", "remove_stale_import_stages",
           "remove_stale_restore_stages", "restore_stage"]

# the largest process id Linux hands out (PID_MAX_LIMIT on 64-bit)
_PID_MAX: Final = 1 << 22
_SQLITE_SIDE_FILES: Final = ("", "-wal", "-shm", "-journal")


def _gone(pid_text: str) -> bool:
    """Whether the process whose id is `pid_text` has ended (False when in doubt)."""
    if not pid_text.isdigit() or len(pid_text) > 7:
        return False
    pid = int(pid_text)
    if not 0 < pid <= _PID_MAX or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False


def remove_files(path: Path) -> None:
    """A SQLite database file and its side files (never through a link: a link is
    removed itself)."""
    for suffix in _SQLITE_SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def restore_stage(live: Path) -> Path:
    """Where this process stages a restore of the ledger file `live`."""
    return live.with_name(f".{live.name}.restore-{os.getpid()}.db")


def remove_stale_restore_stages(live: Path) -> None:
    prefix = f".{live.name}.restore-"
    for path in live.parent.glob(f"{prefix}*.db"):
        try:
            kind = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if (stat.S_ISREG(kind) or stat.S_ISLNK(kind)) and _gone(path.name[len(prefix):-3]):
            remove_files(path)


def import_stage_prefix() -> str:
    """The name prefix of this process's import staging directory."""
    return f"moltis-ledger-import-{os.getpid()}-"


def remove_stale_import_stages(directory: Path) -> None:
    for path in directory.glob("moltis-ledger-import-*-*"):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue  # a link, a file, another user's: not ours
        if _gone(path.name.split("-")[3]):
            shutil.rmtree(path, ignore_errors=True)  # never follows links inside it
