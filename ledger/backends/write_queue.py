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
writer that gives up leaves the helper to release the lock as soon as it gets it. The
helper stays for the connection's next wait (a thread start per contended write cost
its writer a start-up hand-shake, milliseconds on a loaded machine: figure i16g) and
ends once idle for `IDLE_S` or when the connection closes, so it never keeps a dropped
store's queue alive for long; a forked child starts its own (the parent's is not there).

`flock` locks belong to the open file, not to the process: each backend (connection)
opens its own, so stores of one process on one database queue against each other too,
and closing it never touches SQLite's own (POSIX) locks, which are on other files.
Where the file cannot be opened safely (a symbolic link, not a regular file, a file of
another user or one that others may open, no permission, no `flock`), writers go without
the queue, as before (see `open_queue`); `check` and `verify` report such a file
(`queue_file_problem`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ledger._log import get_logger

if TYPE_CHECKING:
    from ledger.backends.base import Backend

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no queue, SQLite's lock alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriteQueue", "open_queue", "queue_file_problem", "writer_queue_problem"]

_log = get_logger("ledger.backends.write_queue")
SUFFIX = ".lock"  # as the file stores' `<file>.lock`

# How long a queue's idle helper thread waits for the next wait before it ends.
IDLE_S = 1.0


def open_queue(database: Path) -> WriteQueue | None:
    """The queue beside `database`, or None where writers must go without it.

    `flock` needs nothing but an open file, so whoever can open the queue file can stop
    every writer (they fail at their busy timeout). The file is therefore created 0600
    from the first byte (group read/write only where the database's group may write it,
    and only with the database's group), never through a link; an existing one is used
    only when it is a plain file of the database's owner (or of this process's user, who
    may write the database) that opens to nobody who cannot write the database. A file
    planted by someone else is left as it is (never chowned) and writers go without the
    queue, as for a symbolic link: SQLite's own lock still excludes them."""
    if fcntl is None:
        return None
    path = Path(f"{database}{SUFFIX}")
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        db = os.stat(database)
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(path, flags)
            created = False
    except OSError as err:  # ELOOP (a planted link), EACCES, a read-only folder
        _log.debug("writers go without the queue", file=str(path), reason=str(err))
        return None
    try:
        if created:
            _make_private(fd, db)
        refusal = _refusal(os.fstat(fd), db)
        if refusal is not None:
            raise OSError(errno.EPERM, f"{refusal}; {_FIX}")
        try:  # flock works on this file system (held by another writer: it works too)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            pass
    except OSError as err:
        os.close(fd)
        _log.debug("writers go without the queue", file=str(path), reason=str(err))
        return None
    return WriteQueue(fd)


def _group_writes(db: os.stat_result) -> bool:
    return bool(db.st_mode & stat.S_IWGRP)


def _make_private(fd: int, db: os.stat_result) -> None:
    """A queue file this process just created: 0600 whatever the umask; the owner's
    (as SQLite does for -wal and -shm, root's writes keep the owner's access) and, where
    the group may write the database, the database's group with read/write."""
    os.fchmod(fd, 0o600)
    if os.geteuid() == 0 and db.st_uid != 0:
        os.fchown(fd, db.st_uid, db.st_gid)
    if _group_writes(db):
        try:
            if os.fstat(fd).st_gid != db.st_gid:
                os.fchown(fd, -1, db.st_gid)
        except OSError:
            return  # not a member of that group: the file stays 0600
        os.fchmod(fd, 0o660)


def _refusal(st: os.stat_result, db: os.stat_result) -> str | None:
    """Why a queue file must not be used (None: it may), as a phrase after its name."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return "is not a plain file"
    if st.st_uid not in (db.st_uid, os.geteuid()):
        return f"is owned by uid {st.st_uid}, not by the database's owner (uid {db.st_uid})"
    mode = stat.S_IMODE(st.st_mode)
    allowed = 0o600 | (0o060 if _group_writes(db) and st.st_gid == db.st_gid else 0)
    if mode & ~allowed:
        return f"has mode {mode:#o}, which opens it to users who cannot write the database"
    return None


def queue_file_problem(database: Path) -> str | None:
    """Why the writers of `database` go without the queue because of its file, with the
    fix, as `check` and `verify` report it (None: the file is fit, or there is none yet
    and the next writer creates it). Only looks (lstat): it never creates, follows or
    changes the file. A writer that refuses the file says so only in a debug line (every
    writer would repeat it), so this is where an operator learns of it."""
    path = Path(f"{database}{SUFFIX}")
    try:
        st = os.lstat(path)
        db = os.stat(database)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"{path}: the writers' queue file cannot be looked at: {err.strerror}"
    reason = _refusal(st, db)
    if reason is None:
        return None
    return (f"{path}: the writers' queue file {reason}, so writers refuse it and go "
            "without the queue (SQLite's lock still keeps them apart, but they wait for "
            f"each other by polling); {_FIX}")


def writer_queue_problem(backend: Backend) -> str | None:
    """`queue_file_problem` for a backend's database; None for backends without a queue
    file (only SQLite's writers queue on a file)."""
    if backend.name != "sqlite":
        return None
    return queue_file_problem(Path(backend.location))


_FIX = ("remove it: the next writer recreates it 0600 (0660 where the database's group "
        "may write the database)")


class WriteQueue:
    """One connection's place in the queue: `take(timeout)` before its write
    transaction, `give()` after it. Not for concurrent use by two threads (the backend
    calls it under its own lock)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closed = False
        self._reset()
        _queues.add(self)

    def _reset(self) -> None:
        """No helper, no wait (a new queue, or one a forked child inherited)."""
        self._mutex = threading.Lock()
        self._asked = threading.Condition(self._mutex)  # the idle helper waits here
        self._pending: threading.Event | None = None  # set when the helper holds it
        self._want: threading.Event | None = None  # a wait the helper has not begun
        self._helper = False  # a helper thread is running
        self._abandoned = False

    def take(self, timeout: float, idle: Callable[[], object] | None = None) -> bool:
        """Hold the queue's lock; False when `timeout` seconds passed first (0: don't
        wait). True also when the lock cannot be used at all (writers go on without).

        `idle()` is called once this writer has to wait, before it sleeps: the writer's
        work that needs no lock (catching up on what the writers ahead of it committed
        while it was busy with its last write), done while another writer holds the
        lock rather than while others wait for it. Called once, not polled: each call
        that finds something new costs a catch-up's fixed CPU (~0.1 ms), which, polled,
        outweighed what it saved the lock holder on a loaded 2-core machine (figure 8,
        2026-12-04), and the last writer's events are always caught up inside the lock.
        It must not raise; the timeout still bounds the whole wait."""
        if self._try():
            return True
        if timeout <= 0:
            return False
        with self._mutex:
            got = self._pending
            if got is None:  # no helper left blocked by an earlier writer that gave up
                got = self._pending = self._want = threading.Event()
                if self._helper:
                    self._asked.notify()
                else:
                    self._helper = True
                    threading.Thread(target=self._serve, daemon=True,
                                     name="ledger-write-queue").start()
            self._abandoned = False
        try:
            if self._wait(got, timeout, idle):
                return True
        except BaseException:  # `idle` broke its promise (or an interrupt): not waiting
            with self._mutex:
                if got.is_set():
                    self.give()
                else:
                    self._abandoned = True
            raise
        with self._mutex:
            if got.is_set():
                return True
            self._abandoned = True  # the helper releases it as soon as it gets it
            return False

    @staticmethod
    def _wait(got: threading.Event, timeout: float, idle: Callable[[], object] | None
              ) -> bool:
        """Wait for the helper to hold the lock (`got`), after running `idle` once."""
        if idle is not None:
            deadline = time.monotonic() + timeout
            idle()
            timeout = max(deadline - time.monotonic(), 0.0)
        return got.wait(timeout)

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

    def _serve(self) -> None:
        """The helper thread: block in flock for each wait asked of it; end once idle
        for IDLE_S or closed."""
        while True:
            with self._mutex:
                while self._want is None and not self._closed:
                    if not self._asked.wait(IDLE_S) and self._want is None:
                        break
                got, self._want = self._want, None
                if got is None:  # idle, or closed (close() closes the file then)
                    self._helper = False
                    return
            # an error means the lock cannot be used: the waiting writer goes without it
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            with self._mutex:
                self._pending = None
                if self._abandoned or self._closed:
                    self.give()
                    if self._closed:
                        os.close(self._fd)
                        self._helper = False
                        got.set()
                        return
                got.set()

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            self._asked.notify()  # an idle helper ends
            if self._pending is not None:
                return  # the blocked helper closes it once its flock returns
        os.close(self._fd)


# Every open queue, for the fork handler (weak: a queue's life is its connection's).
_queues: weakref.WeakSet[WriteQueue] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread: no helper serves its queues (and a
    lock one of them held is the parent's). Forget them; the next wait starts one."""
    for queue in list(_queues):
        queue._reset()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
