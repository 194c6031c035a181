"""The queue of writer processes in front of a SQLite ledger's write lock.

SQLite has no queue for its write lock: a writer that finds it held can only try again
later (the ledger's busy handler polls every 0.2-1 ms). Every hand-off then costs the
time until some waiter's next try, the waiters burn CPU trying, and a writer that has
just committed, being awake, often takes the lock again before them. So writers of the
ledger first take an exclusive `flock` on a small file beside the database
(`<database>.lock`) and only then begin their SQLite transaction: waiters sleep in the
kernel and wake the moment it is released. SQLite's lock still does the real work (a
writer that does not use the queue, such as an older version or another program writing
the same database, is still excluded by it, and waited for by polling).

Waiting is bounded by the busy timeout, which `flock` cannot do by itself, so a long
wait blocks in a helper thread while the writer waits on an event with the timeout; a
writer that gives up leaves the helper to release the lock as soon as it gets it.

`flock` locks belong to the open file, not to the process: each backend (connection)
opens its own, so stores of one process on one database queue against each other too,
and closing it never touches SQLite's own (POSIX) locks, which are on other files.
Where the file cannot be opened safely (a symbolic link, not a regular file, no
permission, no `flock`), writers go without the queue, as before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no queue, SQLite's lock alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriteQueue", "open_queue"]

SUFFIX = ".lock"  # as the file stores' `<file>.lock`


def open_queue(database: Path) -> WriteQueue | None:
    """The queue beside `database` (created with the database's permission bits, never
    through a link), or None where writers must go without it."""
    if fcntl is None:
        return None
    path = Path(f"{database}{SUFFIX}")
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        db = os.stat(database)
        mode = stat.S_IMODE(db.st_mode) & 0o666
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
            os.fchmod(fd, mode)  # whatever the umask: the database's own bits
        except FileExistsError:
            fd = os.open(path, flags)
    except OSError:
        return None  # ELOOP (a planted link), EACCES, a read-only folder: no queue
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise OSError(errno.EINVAL, "not a plain file")
        if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (db.st_uid, db.st_gid):
            # as SQLite does for -wal and -shm: root's writes keep the owner's access
            os.fchown(fd, db.st_uid, db.st_gid)
        try:  # flock works on this file system (held by another writer: it works too)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            pass
    except OSError:
        os.close(fd)
        return None
    return WriteQueue(fd)


class WriteQueue:
    """One connection's place in the queue: `take(timeout)` before its write
    transaction, `give()` after it. Not for concurrent use by two threads (the backend
    calls it under its own lock)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._mutex = threading.Lock()
        self._pending: threading.Event | None = None  # set when the helper holds it
        self._abandoned = False
        self._closed = False

    def take(self, timeout: float) -> bool:
        """Hold the queue's lock; False when `timeout` seconds passed first (0: don't
        wait). True also when the lock cannot be used at all (writers go on without)."""
        if self._try():
            return True
        if timeout <= 0:
            return False
        with self._mutex:
            got = self._pending
            if got is None:  # no helper left blocked by an earlier writer that gave up
                got = self._pending = threading.Event()
                threading.Thread(target=self._block, args=(got,), daemon=True,
                                 name="ledger-write-queue").start()
            self._abandoned = False
        if got.wait(timeout):
            return True
        with self._mutex:
            if got.is_set():
                return True
            self._abandoned = True  # the helper releases it as soon as it gets it
            return False

    def give(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _try(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            return True  # the lock cannot be used: go without it
        return True

    def _block(self, got: threading.Event) -> None:
        # an error means the lock cannot be used: the waiting writer goes without it
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        with self._mutex:
            self._pending = None
            if self._abandoned or self._closed:
                self.give()
                if self._closed:
                    os.close(self._fd)
            got.set()

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            if self._pending is not None:
                return  # the blocked helper closes it once its flock returns
        os.close(self._fd)
