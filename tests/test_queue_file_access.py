"""Who may touch the writers' queue file `<database>.lock` (review B, findings 4 and 5).

`flock` needs nothing but an open file, so anyone who can open the queue file can stop
every writer of the ledger (they fail with StoreBusyError at their busy timeout). The
file is created 0600 (group bits only where the group may write the database), and an
existing one is used only when it is the database owner's own and opens to nobody who
cannot write the database; otherwise writers go without the queue (SQLite's lock still
excludes them), and it is never chowned. The second user is a real process (uid 65534)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import SqliteConfigStore
from ledger.backends.write_queue import open_queue
from ledger.errors import StoreBusyError
from tests.conftest import run

NOBODY = 65534  # an unprivileged local user with no access to the ledger
DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600}}
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to act as a second local user")


def increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def new_store(path: Path, **kw: Any) -> SqliteConfigStore:
    store = SqliteConfigStore(path, **kw)
    run(store.save_raw(DOC, actor="setup", source="import"))
    return store


def mode_of(path: Path | str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A sticky, world-writable folder (pytest's own tmp folders are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="queue-"))
    os.chmod(base, 0o755)
    folder = base / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)
    yield folder
    shutil.rmtree(base, ignore_errors=True)


def hold_as_nobody(lock: Path) -> subprocess.Popen[bytes]:
    """Another local user's process that opens the queue file read-only and holds an
    exclusive flock on it until killed."""
    code = ("import fcntl, os, sys, time\n"
            f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
            f"fd = os.open({str(lock)!r}, os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "sys.stdout.write('held\\n'); sys.stdout.flush()\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    line = proc.stdout.readline() if proc.stdout else b""
    if line.strip() != b"held":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the other user could not hold the lock: {err.decode()}")
    return proc


@pytest.mark.parametrize(("db_mode", "lock_mode"),
                         [(0o644, 0o600), (0o640, 0o600), (0o660, 0o660), (0o600, 0o600)])
def test_queue_file_opens_to_nobody_who_cannot_write_the_database(tmp_path, db_mode,
                                                                   lock_mode):
    path = tmp_path / "l.db"
    new_store(path).ledger.close()
    os.unlink(f"{path}.lock")
    os.chmod(path, db_mode)
    old = os.umask(0)  # the umask must not widen (nor decide) the file's bits
    try:
        store = new_store(path)  # its open creates the queue file
    finally:
        os.umask(old)
    store.ledger.close()
    assert mode_of(f"{path}.lock") == lock_mode, (
        f"a database {oct(db_mode)} got a queue file {oct(mode_of(f'{path}.lock'))}: "
        "users who can only read the database could flock it and stop every writer")


def test_a_queue_file_open_to_others_is_not_used(tmp_path):
    path = tmp_path / "l.db"
    new_store(path).ledger.close()
    lock = Path(f"{path}.lock")
    os.chmod(lock, 0o604)
    assert open_queue(path) is None
    assert mode_of(lock) == 0o604  # left as found: not ours to change
    os.chmod(lock, 0o600)
    queue = open_queue(path)
    assert queue is not None
    queue.close()


@needs_root
def test_a_user_without_access_to_the_ledger_cannot_stop_its_writers(shared_folder):
    path = shared_folder / "l.db"
    new_store(path).ledger.close()
    os.unlink(f"{path}.lock")
    assert mode_of(path) == 0o600  # the ledger itself is private
    planted = subprocess.run(
        [sys.executable, "-c",
         f"import os; os.setgid({NOBODY}); os.setuid({NOBODY}); "
         f"fd = os.open({str(path) + '.lock'!r}, os.O_CREAT | os.O_RDWR, 0o666); "
         "os.fchmod(fd, 0o666)"], capture_output=True, check=False)
    assert planted.returncode == 0, planted.stderr
    store = SqliteConfigStore(path, busy_timeout=0.5)
    store.ledger.update_typed(increment, actor="owner")
    lock = Path(f"{path}.lock")
    assert os.lstat(lock).st_uid == NOBODY and mode_of(lock) == 0o666  # never chowned
    holder = hold_as_nobody(lock)
    try:
        try:
            store.ledger.update_typed(increment, actor="owner")
        except StoreBusyError as err:
            pytest.fail(f"an unprivileged user stopped the ledger's writers: {err}")
    finally:
        holder.kill()
        holder.communicate()  # reaped, its pipes closed
        store.ledger.close()


@needs_root
def test_a_private_queue_file_of_another_user_is_not_used(shared_folder):
    """Even 0600: a file the database's owner does not own is someone else's lock."""
    path = shared_folder / "l.db"
    new_store(path).ledger.close()
    lock = Path(f"{path}.lock")
    os.chown(lock, NOBODY, NOBODY)
    assert open_queue(path) is None
    assert os.lstat(lock).st_uid == NOBODY
