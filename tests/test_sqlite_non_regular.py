"""A FIFO or a device in the place of the ledger database (or its -wal / -shm file)
must be refused with a clear error naming it, never waited on or read without end:
SQLite opens such a path and then blocks in its first read. The child process and its
timeout are only a guard: a hang is the failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

OPEN = """
import sys
from ledger.backends.sqlite import SqliteBackend
from ledger.errors import LedgerError
try:
    SqliteBackend(sys.argv[1], read_only=sys.argv[2] == "ro").close()
except LedgerError as err:
    print(f"refused: {err}")
"""


def _open(db: Path, mode: str) -> str:
    try:
        proc = subprocess.run([sys.executable, "-c", OPEN, str(db), mode],
                              capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"opening {db} ({mode}) hung")
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", ["rw", "ro"])
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_fifo_in_place_of_the_database_is_refused(tmp_path: Path, mode: str,
                                                    suffix: str) -> None:
    db = tmp_path / "moltis.db"
    if suffix:
        from ledger.backends.sqlite import SqliteBackend

        SqliteBackend(db).close()
    os.mkfifo(f"{db}{suffix}")
    said = _open(db, mode)
    assert "refused:" in said and "FIFO" in said and f"moltis.db{suffix}" in said, said


def test_a_link_to_a_device_in_place_of_the_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "moltis.db"
    db.symlink_to("/dev/zero")
    said = _open(db, "ro")
    assert "refused:" in said and "character device" in said, said
