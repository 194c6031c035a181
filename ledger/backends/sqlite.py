"""The SQLite backend, on apsw.

Tables are prefixed `ledger_` so the ledger can live inside Moltis's own `moltis.db`.
Every append runs in BEGIN IMMEDIATE: the writer reads the head and then inserts, and
in a DEFERRED transaction the read-to-write upgrade fails with SQLITE_BUSY at once,
ignoring the busy timeout. One global chain means appends serialize; that is the price
of a total order, and the fsync of the commit dominates it anyway.

Durability: WAL with `synchronous=FULL` by default, so an acknowledged append survives
power loss. `synchronous="NORMAL"` is faster but can lose the last commits after a power
loss or OS crash (never after a process crash).

This module is long because it holds one backend whole: schema and format checks, the
append with its integrity checks, reads, snapshots, the busy handler and backups.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain, starmap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import apsw

from ledger.backends.base import (
    CREATED_FORMAT,
    EMPTY_HEAD,
    Backend,
    Changes,
    Head,
    SecretRow,
    SnapshotRow,
    format_needed,
    raise_format,
    refuse_newer_format,
)
from ledger.core.events import KIND_CHANGE, Record, Row, now_us
from ledger.errors import (
    ReadOnlyError,
    StoreBusyError,
    StoreError,
)
from ledger.files.dirs import ensure_private_dir
from ledger.files.safe_io import check_regular, create_private

if TYPE_CHECKING:  # a read-only connection never loads the writers' queue
    from ledger.backends.write_queue import WriteQueue

__all__ = ["SqliteBackend"]

Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS ledger_events (
    seq       INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    reason    TEXT NOT NULL,
    source    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    payload   BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS ledger_events_no_update BEFORE UPDATE ON ledger_events
BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only: events are never updated'); END;
CREATE TRIGGER IF NOT EXISTS ledger_events_no_delete BEFORE DELETE ON ledger_events
BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only: events are never deleted'); END;
CREATE TRIGGER IF NOT EXISTS ledger_events_gap_free BEFORE INSERT ON ledger_events
WHEN NEW.seq != COALESCE((SELECT max(seq) FROM ledger_events), 0) + 1
BEGIN SELECT RAISE(ABORT, 'ledger_events: seq must follow the head without a gap'); END;
CREATE TABLE IF NOT EXISTS ledger_snapshots (
    seq   INTEGER PRIMARY KEY,
    hash  BLOB NOT NULL,
    state BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS ledger_secrets (
    ref          TEXT PRIMARY KEY,
    sealed       BLOB,
    created_seq  INTEGER NOT NULL,
    shredded_seq INTEGER
) STRICT;
"""

_COLUMNS = "seq, ts, actor, reason, source, kind, payload, prev_hash, hash"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_INSERT = f"INSERT INTO ledger_events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
_COUNT_RANGE = "SELECT count(*) FROM ledger_events WHERE seq BETWEEN ? AND ?"
_SET_META = ("INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
             "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
_ROW_COLUMNS = "seq, kind, payload, hash, ts"
# A full replay's read (`read_changes`): the change events' seq and payload (a STRICT
# BLOB: always bytes), and the last event's head.
_CHANGE_COLUMNS = "seq, payload"
_ONLY_CHANGES = f" AND kind = '{KIND_CHANGE}'"
_LAST_IN = ("SELECT seq, hash, ts FROM ledger_events WHERE seq > ? AND seq <= ? "
            "ORDER BY seq DESC LIMIT 1")
_I64_MAX = 2**63 - 1
# The same columns with the text ones read as bytes (decoded with surrogateescape), for
# rows whose text is not UTF-8: see SqliteBackend._tampered.
_BYTES_COLUMNS: dict[str, tuple[str, frozenset[int]]] = {  # columns -> (SQL, text indexes)
    _COLUMNS: ("seq, ts, CAST(actor AS BLOB), CAST(reason AS BLOB), CAST(source AS BLOB), "
               "CAST(kind AS BLOB), payload, prev_hash, hash", frozenset({2, 3, 4, 5})),
    _ROW_COLUMNS: ("seq, CAST(kind AS BLOB), payload, hash, ts", frozenset({1})),
    _CHANGE_COLUMNS: (_CHANGE_COLUMNS, frozenset()),  # no text column: never needed
}
_CHUNK = 1024  # rows per locked read when streaming events
_OWN_TABLES = "('ledger_events', 'ledger_snapshots', 'ledger_secrets', 'ledger_meta')"


def _translate(err: Exception, location: str, doing: str,
               system_errno: int | None = None) -> Exception:
    """Map an apsw error to the library's tree, naming the database file."""
    if isinstance(err, apsw.BusyError | apsw.LockedError):
        return StoreBusyError(f"{location}: the ledger is locked by another writer ({doing})")
    if isinstance(err, apsw.ReadOnlyError):
        return ReadOnlyError(f"{location}: the database is read-only ({doing})")
    if isinstance(err, apsw.FullError):
        return StoreError(f"{location}: the disk is full ({doing}); nothing was written")
    if isinstance(err, apsw.NotADBError):
        return StoreError(f"{location}: not a SQLite database")
    if isinstance(err, apsw.CorruptError):
        return StoreError(f"{location}: the database file is corrupt ({doing})")
    if isinstance(err, apsw.CantOpenError):
        return StoreError(f"{location}: cannot open the database file ({doing})")
    if isinstance(err, apsw.IOError) and system_errno in _FULL_ERRNOS:
        # SQLite reports a write over the file size limit (EFBIG) as an I/O error
        return StoreError(f"{location}: the disk is full ({doing}: "
                          f"{os.strerror(system_errno or 0)}); nothing was written")
    if isinstance(err, apsw.IOError):
        return StoreError(f"{location}: I/O error ({doing}): {err}")
    return StoreError(f"{location}: {doing} failed: {err}")


def _create_private_file(path: Path) -> None:
    """Create the database file 0600 (and its folder 0700) before SQLite does: SQLite
    copies the database file's mode to its -wal and -shm files, so they stay private."""
    ensure_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)


# Waiting for another process's write lock, where the queue of writer processes
# (write_queue.py) does not order the writers (one that does not use it): poll every
# 0.2-1 ms (jittered, so waiters do not wake in lock-step) until the busy timeout.
# SQLite's own busy handler sleeps longer and longer (up to 100 ms) between tries, so
# a writer that lost a few rounds sleeps through many commits of the others and one
# update can take most of a second while the median takes a millisecond. Each try is
# a lock attempt on the -shm file: cheap.
_POLL_MIN_S, _POLL_MAX_S = 0.0002, 0.001


class _FairWait:
    """apsw busy handler: short bounded polling until `timeout_s` has passed (counted
    from `since` when the caller set it: the time already spent in the write queue)."""

    __slots__ = ("_since", "since", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._since = 0.0
        self.since: float | None = None

    def __call__(self, prior_calls: int) -> bool:
        now = time.monotonic()
        if prior_calls == 0:
            self._since = now if self.since is None else self.since
        if now - self._since >= self.timeout_s:
            return False  # SQLITE_BUSY: the caller reports the lock as held
        import random  # only when another writer holds the lock (start-up time)

        time.sleep(random.uniform(_POLL_MIN_S, _POLL_MAX_S))  # noqa: S311 - jitter only
        return True


class _SqliteTxn:
    """One write transaction (`SqliteBackend._transaction`). It refuses every write once
    the transaction is over: SQLite rolls back the WHOLE transaction on some errors (a
    trigger's RAISE(ROLLBACK); SQLITE_FULL, IOERR, BUSY, NOMEM may), and a statement
    issued after that would run in autocommit mode and commit on its own."""

    __slots__ = ("_conn", "_known", "_location", "ended")

    def __init__(self, conn: apsw.Connection, location: str) -> None:
        self._conn = conn
        self._location = location
        self.ended = False  # set by `_Write` when the write block is left
        # (the connection's total_changes(), the head) when `append` proved the head:
        # good for as long as nothing else changed in the database (see `head`)
        self._known: tuple[int, Head] | None = None

    @property
    def active(self) -> bool:
        """Is the transaction still open (not rolled back by SQLite, not ended)?"""
        return not self.ended and not self._conn.getautocommit()

    def _check_open(self) -> None:
        if self.ended or self._conn.getautocommit():  # not `active`: one call less a write
            raise StoreError(f"{self._location}: the write transaction is no longer open "
                             "(SQLite rolled it back, or it ended); nothing more is written "
                             "in it")

    def savepoint(self) -> contextlib.AbstractContextManager[Any]:
        """A nested scope: what it wrote is undone if it raises (one event of a group
        commit), and the enclosing transaction goes on. apsw's connection is that scope
        (SAVEPOINT on entry; RELEASE, or ROLLBACK TO and RELEASE on any exception), in C:
        half the cost per event of a generator-based one. Outside a transaction its
        SAVEPOINT would begin one and RELEASE commit it: refused (`_check_open`)."""
        self._check_open()
        return _Savepoint(self)

    def head(self) -> Head:
        known = self._known
        if known is not None and known[0] == self._conn.total_changes():
            return known[1]  # proven by `append`, and nothing has changed since
        return _head(self._conn)

    def append(self, records: Sequence[Record]) -> None:
        self._check_open()
        if (need := format_needed(records)) > CREATED_FORMAT:
            raise_format(self, need, self._location)
        self._known = None
        c = self._conn
        before = c.total_changes()
        if len(records) == 1:  # the common case: one event per write, without executemany
            r = records[0]
            c.execute(_INSERT, (r.seq, r.ts, r.actor, r.reason, r.source, r.kind, r.payload,
                                r.prev_hash, r.hash))
            after, stored = c.total_changes(), c.changes()
            if stored == 1 and after - before == 1:
                # The INSERT itself stored this row (`changes()` counts only the
                # statement's own rows, never a trigger's), and nothing else in the
                # database changed (`total_changes()` counts trigger writes too): the
                # head is this event, until something changes. No head read needed.
                self._known = (after, Head(r.seq, r.hash, r.ts))
                return
        else:
            c.executemany(_INSERT, [(r.seq, r.ts, r.actor, r.reason, r.source, r.kind,
                                     r.payload, r.prev_hash, r.hash) for r in records])
            after = c.total_changes()
            # changes() would be the last row's statement only: count the rows stored
            stored = c.execute(_COUNT_RANGE, (records[0].seq, records[-1].seq)).get
        # A foreign trigger (RAISE(IGNORE)) or rule can make an INSERT store nothing
        # without an error. total_changes() counts trigger writes too, so a trigger that
        # writes a row elsewhere and then swallows ours leaves it one up all the same:
        # the statement's own count, or the rows found, says whether the events are
        # there, and total_changes() that nothing else changed with them.
        if stored != len(records) or after - before != len(records):
            raise StoreError(f"{self._location}: {len(records)} event(s) were not stored "
                             "(something in the database discards inserts into ledger_events)")

    def put_snapshot(self, seq: int, hash: bytes, state: bytes) -> None:
        self._check_open()
        self._conn.execute(
            "INSERT OR REPLACE INTO ledger_snapshots (seq, hash, state) VALUES (?,?,?)",
            (seq, hash, state),
        )

    def put_secret(self, ref: str, sealed: bytes, created_seq: int) -> None:
        self._check_open()
        self._conn.execute(
            "INSERT INTO ledger_secrets (ref, sealed, created_seq) VALUES (?,?,?)",
            (ref, sealed, created_seq),
        )

    def shred_secret(self, ref: str, seq: int) -> bool:
        self._check_open()
        self._conn.execute(
            "UPDATE ledger_secrets SET sealed = NULL, shredded_seq = ? "
            "WHERE ref = ? AND sealed IS NOT NULL",
            (seq, ref),
        )
        return bool(self._conn.changes())

    def reseal_secret(self, ref: str, sealed: bytes) -> bool:
        self._check_open()
        self._conn.execute(
            "UPDATE ledger_secrets SET sealed = ? WHERE ref = ? AND sealed IS NOT NULL",
            (sealed, ref),
        )
        return bool(self._conn.changes())

    def drop_snapshots(self) -> int:
        self._check_open()
        self._conn.execute("DELETE FROM ledger_snapshots")
        return int(self._conn.changes())

    def set_meta(self, key: str, value: str) -> None:
        self._check_open()
        # An upsert updates an existing row where it is. INSERT OR REPLACE deleted it and
        # inserted it under a new rowid, so the key's index page was rewritten too: one
        # page more in every commit's WAL (the head MAC is set on every append).
        self._conn.execute(_SET_META, (key, value))

    def delete_meta(self, key: str) -> None:
        self._check_open()
        self._conn.execute("DELETE FROM ledger_meta WHERE key = ?", (key,))

    def get_meta(self, key: str) -> str | None:
        return _meta(self._conn, key)


class _Savepoint:
    """apsw's connection as the savepoint scope, forgetting the head `append` proved
    when the scope is rolled back (ROLLBACK TO leaves `total_changes()` as it was, so
    the count alone would not tell that the proven event is gone)."""

    __slots__ = ("_txn",)

    def __init__(self, txn: _SqliteTxn) -> None:
        self._txn = txn

    def __enter__(self) -> apsw.Connection:
        return self._txn._conn.__enter__()

    def __exit__(self, kind: Any, err: Any, tb: Any) -> bool | None:
        if kind is not None:
            self._txn._known = None
        return self._txn._conn.__exit__(kind, err, tb)


def _head(conn: apsw.Connection) -> Head:
    row = conn.execute(
        "SELECT seq, hash, ts FROM ledger_events ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return Head(row[0], row[1], row[2]) if row else EMPTY_HEAD


def _meta(conn: apsw.Connection, key: str) -> str | None:
    # as bytes: a tampered value that is not UTF-8 must reach the code that checks it
    # (verify names it) instead of failing the read
    row = conn.execute("SELECT CAST(value AS BLOB) FROM ledger_meta WHERE key = ?",
                       (key,)).fetchone()
    return None if row is None else bytes(row[0]).decode("utf-8", "surrogateescape")


def _on_read_only_media(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _open_read_only(path: Path, immutable: bool = False) -> apsw.Connection:
    """A read-only connection. On read-only media a WAL database has no -shm file to
    coordinate readers and cannot get one, so it is opened immutable: nothing can write
    to that file system anyway. `immutable` asks for the same elsewhere (a full disk,
    where no -shm can be created either: the caller's last resort before a mirror)."""
    if immutable or _on_read_only_media(path):
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size:
            # Commits may still be in the WAL (a writer stopped before it was folded
            # in): an immutable open would not see them. SQLite reads them read-only
            # as long as the -shm file is there too.
            if not Path(f"{path}-shm").exists():
                raise StoreError(f"{path}: {wal.name} holds commits that cannot be read on "
                                 "read-only media without its -shm file; mount it read-write "
                                 "once (any open folds the log in)")
            return apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
        return apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    return apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)


class _Write:
    """`SqliteBackend.write()`: the connection's lock, this process's turn in the queue
    of writer processes (write_queue), then one transaction. A class rather than a
    generator-based context manager: every append enters and leaves one (issue 16)."""

    __slots__ = ("_backend", "_idle", "_queue", "_txn", "_wait")

    def __init__(self, backend: SqliteBackend, wait: bool,
                 idle: Callable[[], object] | None) -> None:
        self._backend = backend
        self._wait = wait
        self._idle = idle  # what the writer does if it has to wait (Backend.write)
        self._queue: WriteQueue | None = None

    def __enter__(self) -> _SqliteTxn:
        b = self._backend
        b._lock.acquire()
        try:
            queue = self._queue = b._queue
            if queue is not None:
                # other processes' writers first (write_queue): the same busy timeout
                # bounds the wait there and at SQLite's lock together
                b._fair_wait.since = time.monotonic()
                if not queue.take(b._fair_wait.timeout_s if self._wait else 0.0,
                                  self._idle):
                    b._fair_wait.since = None
                    raise StoreBusyError(f"{b.location}: the ledger is locked by another "
                                         "writer (starting a write)")
            try:
                self._txn = b._begin(self._wait)
            except BaseException:
                self._let_go()
                raise
        except BaseException:
            b._lock.release()
            raise
        return self._txn

    def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
        try:
            self._backend._end(self._txn, err if kind is not None else None)
        finally:
            self._let_go()
            self._backend._lock.release()

    def _let_go(self) -> None:
        self._backend._fair_wait.since = None
        if self._queue is not None:
            self._queue.give()


class SqliteBackend:
    """A ledger in one SQLite file (WAL), shared safely by many processes."""

    name = "sqlite"
    read_only_reason = ""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
        read_only: bool = False,
        immutable: bool = False,
        write_queue: bool = True,
    ) -> None:
        """`write_queue=False`: for a file only this connection writes (a backup being
        built), where the queue of writer processes (write_queue.py) has no one to
        order and its lock file would be left beside the copy."""
        self.path = Path(path)
        self.location = str(self.path)
        self.read_only = read_only
        self._fair_wait = _FairWait(busy_timeout)
        self._lock = threading.RLock()
        self._queue: WriteQueue | None = None
        self._data_version: int | None = None
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        self._synchronous = synchronous
        if not read_only and self.path.exists() and _on_read_only_media(self.path):
            # Reads still work there; every write will say why it cannot.
            self.read_only = read_only = True
            self.read_only_reason = f"{self.location}: the file system is read-only"
        for suffix in ("", "-wal", "-shm"):  # SQLite would wait on a FIFO for ever
            check_regular(Path(f"{self.path}{suffix}"), "open the ledger database")
        try:
            if read_only:
                if not self.path.exists():
                    raise ReadOnlyError(f"{self.location}: no ledger database here (read-only)")
                self._conn = _open_read_only(self.path, immutable)
            else:
                _create_private_file(self.path)
                self._conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READWRITE)
        except apsw.Error as err:
            raise _translate(err, self.location, "opening") from err
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise ReadOnlyError(f"{self.location}: cannot create the database: "
                                    f"{err.strerror}") from err
            raise StoreError(f"{self.location}: cannot create the database: "
                             f"{err.strerror}") from err
        try:
            # The format check comes first and only reads: a database written by a newer
            # version must not be touched at all (journal mode and optimize can write).
            self._conn.set_busy_handler(self._fair_wait)
            self._refuse_newer_format()
            self._configure(synchronous)
            self._check_format()
        except BaseException:
            self._conn.close()
            raise
        if write_queue and not self.read_only:
            # opened with the database (as SQLite opens its -wal and -shm), so a write
            # does no more file work than it did before the queue
            # lazy: a read-only connection (`moltis-ledger get`) never queues
            from ledger.backends.write_queue import open_queue

            self._queue = open_queue(self.path)

    # -- setup -----------------------------------------------------------------------

    def _configure(self, synchronous: Synchronous) -> None:
        c = self._conn
        # Double-quoted string literals are a classic SQLite foot-gun; refuse them.
        c.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
        c.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)
        try:
            c.pragma("foreign_keys", True)
            if not self.read_only:
                mode = c.pragma("journal_mode", "wal")
                if str(mode).lower() != "wal":
                    raise StoreError(f"{self.location}: cannot switch to WAL (got {mode!r})")
            c.pragma("synchronous", synchronous)
            # Shredding a secret must overwrite its bytes on disk, not just unlink them.
            c.pragma("secure_delete", True)
            forgot = not self.read_only and self._forget_table_stats()
        except apsw.Error as err:
            raise _translate(err, self.location, "configuring the connection") from err
        if forgot:
            # this connection planned with the statistics it loaded at open (and keeps
            # those plans): a new one plans without them; once per database file
            c.close()
            self._conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READWRITE)
            self._conn.set_busy_handler(self._fair_wait)
            self._configure(synchronous)

    def _forget_table_stats(self) -> bool:
        """Drop planner statistics of the ledger's own tables. Every query of the ledger
        is a primary-key lookup or a seq range, which needs none, and statistics taken
        while `ledger_events` was small (`PRAGMA optimize` on an early open, as this
        backend once ran on every writable open) make SQLite plan each range read
        (catch-up, history pages, replay chunks) as a full scan for ever after. Not
        ANALYZE at all any more; a full or busy disk leaves the statistics be (an
        open must not fail over them). True when some were dropped."""
        c = self._conn
        if c.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'").fetchone() is None:
            return False
        if c.execute(f"SELECT 1 FROM sqlite_stat1 WHERE tbl IN {_OWN_TABLES}").fetchone() is None:
            return False
        try:
            c.execute(f"DELETE FROM sqlite_stat1 WHERE tbl IN {_OWN_TABLES}")
        except (apsw.FullError, apsw.BusyError, apsw.ReadOnlyError):
            return False
        return True

    def _format_version(self) -> int | None:
        c = self._conn
        try:
            exists = c.execute(
                "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'ledger_meta'"
            ).fetchone()
            version = _meta(c, "format_version") if exists else None
        except apsw.Error as err:
            raise _translate(err, self.location, "reading the format version") from err
        try:
            return None if version is None else int(version)
        except ValueError:
            raise StoreError(f"{self.location}: unreadable format version {version!r}") from None

    def _refuse_newer_format(self) -> None:
        refuse_newer_format(self.location, self._format_version())

    def _check_format(self) -> None:
        c = self._conn
        if self._format_version() is not None and self._has_all_tables():
            return
        if self.read_only:
            raise ReadOnlyError(f"{self.location}: no ledger tables here (opened read-only)")
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(_SCHEMA)
                if _meta(c, "format_version") is None:
                    import uuid

                    c.execute(
                        "INSERT INTO ledger_meta (key, value) VALUES "
                        "('format_version', ?), ('ledger_id', ?), ('created_us', ?)",
                        (str(CREATED_FORMAT), uuid.uuid4().hex, str(now_us())),
                    )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        except apsw.Error as err:
            raise _translate(err, self.location, "creating the ledger tables") from err

    def _has_all_tables(self) -> bool:
        if self.read_only:
            return True
        names = {
            r[0]
            for r in self._conn.execute(
                "SELECT name FROM sqlite_schema WHERE name LIKE 'ledger_%'"
            )
        }
        # Triggers count too: a ledger whose append-only triggers were dropped gets
        # them back the next time a writer opens it.
        return {"ledger_events", "ledger_snapshots", "ledger_secrets", "ledger_meta",
                "ledger_events_no_update", "ledger_events_no_delete",
                "ledger_events_gap_free"} <= names

    # -- writes ----------------------------------------------------------------------

    def group_key(self) -> tuple[object, ...]:
        """Which ledgers of this process may commit in one group (the same file, with
        the same durability); see `ledger.engine.group_commit`."""
        st = os.stat(self.path)
        return ("sqlite", st.st_dev, st.st_ino, self._synchronous)

    def write(self, *, wait: bool = True, while_waiting: Callable[[], object] | None = None
              ) -> _Write:
        """The one write transaction (BEGIN IMMEDIATE), after other processes' writers
        (the write queue); committed when the block ends, rolled back if it raises."""
        if self.read_only:
            raise ReadOnlyError(self.read_only_reason
                                or f"{self.location}: the ledger was opened read-only")
        return _Write(self, wait, while_waiting)

    def _begin(self, wait: bool) -> _SqliteTxn:
        c = self._conn
        try:
            if not wait:
                c.set_busy_handler(None)
            try:
                c.execute("BEGIN IMMEDIATE")
            finally:
                if not wait:
                    c.set_busy_handler(self._fair_wait)
        except apsw.Error as err:
            raise _translate(err, self.location, "starting a write") from err
        return _SqliteTxn(c, self.location)

    def _end(self, txn: _SqliteTxn, failed: BaseException | None) -> None:
        """Commit `txn`, or roll it back after `failed` (re-raised by the caller unless
        it is an apsw error, raised here as the library's)."""
        c = self._conn
        txn.ended = True
        if failed is not None:
            os_errno = c.system_errno
            with contextlib.suppress(apsw.Error):
                c.execute("ROLLBACK")
            if isinstance(failed, apsw.Error):
                raise _translate(failed, self.location, "writing", os_errno) from failed
            return
        if c.getautocommit():
            # SQLite rolled the whole transaction back and the block went on regardless:
            # nothing of it was written (COMMIT would only say "no transaction is active")
            raise StoreError(f"{self.location}: the write transaction was rolled back by "
                             "SQLite before its commit; nothing of it was written")
        try:
            c.execute("COMMIT")
        except apsw.Error as err:
            os_errno = c.system_errno
            with contextlib.suppress(apsw.Error):
                c.execute("ROLLBACK")
            raise _translate(err, self.location, "committing", os_errno) from err

    # -- reads -----------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return list(self._conn.execute(sql, args))
        except apsw.Error as err:
            raise _translate(err, self.location, "reading") from err

    def head(self) -> Head:
        try:
            with self._lock:
                return _head(self._conn)
        except apsw.Error as err:
            raise _translate(err, self.location, "reading the head") from err

    def changed(self) -> bool:
        try:
            with self._lock:
                row = self._conn.execute("PRAGMA data_version").fetchone()
                v = row[0] if row else None
        except apsw.Error as err:
            raise _translate(err, self.location, "polling for changes") from err
        if v != self._data_version:
            self._data_version = v
            return True
        return False

    def read(self, after: int = 0, until: int | None = None, *, descending: bool = False,
             limit: int | None = None) -> Iterator[Record]:
        return starmap(Record, chain.from_iterable(
            self._chunks(_COLUMNS, after, until, descending, limit)))

    def read_rows(self, after: int = 0, until: int | None = None) -> Iterator[Row]:
        # rows are handed out by C iterators, one generator step per chunk: a full
        # replay's per-row cost is its own decode and merge (figure 5a)
        return chain.from_iterable(self._chunks(_ROW_COLUMNS, after, until, False, None))

    def read_changes(self, after: int = 0, until: int | None = None) -> Changes:
        # two columns, where a replay's rows had five: the hash and ts only of the last
        # event, and non-change events left in the database (figure 5a)
        try:
            with self._lock:
                row = self._conn.execute(_LAST_IN, (after, _I64_MAX if until is None
                                                    else until)).fetchone()
        except apsw.Error as err:
            raise _translate(err, self.location, "reading events") from err
        if row is None:
            return None, iter(())
        last = Head(row[0], row[1], row[2])
        return last, chain.from_iterable(self._chunks(_CHANGE_COLUMNS, after, last.seq, False,
                                                      None, _ONLY_CHANGES))

    def _chunks(self, columns: str, after: int, until: int | None, descending: bool,
                limit: int | None, where: str = "") -> Iterator[list[tuple[Any, ...]]]:
        """Events with after < seq <= until, streamed in chunks of `_CHUNK` rows, each
        read whole under the connection's lock. A statement left open across the
        caller's `yield`s would run on this connection while another thread of the
        process writes on it (apsw refuses that: "Connection is busy in another
        thread"), and a generator must never hold the lock while suspended. `until`
        is pinned to the head when the read starts, so appends made meanwhile are not
        read half-way (the same view one statement would have given)."""
        try:
            if until is None:
                with self._lock:
                    until = _head(self._conn).seq
            low, high, left = after, until, limit
            order = "DESC" if descending else "ASC"
            while left is None or left > 0:
                n = _CHUNK if left is None else min(_CHUNK, left)
                sql = (f"SELECT {{}} FROM ledger_events WHERE seq > ? AND seq <= ?{where} "
                       f"ORDER BY seq {order} LIMIT ?")
                with self._lock:
                    try:
                        rows = list(self._conn.execute(sql.format(columns), (low, high, n)))
                    except UnicodeDecodeError:
                        # A text column that is not UTF-8 can only come from tampering:
                        # read this chunk as bytes so verify can name the event.
                        raw_columns, text = _BYTES_COLUMNS[columns]
                        rows = self._tampered(sql.format(raw_columns), (low, high, n), text)
                if rows:
                    yield rows
                if len(rows) < n:
                    return
                if left is not None:
                    left -= len(rows)
                if descending:
                    high = rows[-1][0] - 1
                else:
                    low = rows[-1][0]
        except apsw.Error as err:
            raise _translate(err, self.location, "reading events") from err

    def _tampered(self, sql: str, args: tuple[Any, ...], text: frozenset[int]
                  ) -> list[tuple[Any, ...]]:
        return [tuple(bytes(v).decode("utf-8", "surrogateescape") if i in text else v
                      for i, v in enumerate(row))
                for row in self._conn.execute(sql, args)]

    def record(self, seq: int) -> Record | None:
        return next(self.read(seq - 1, seq), None)

    def ts_of(self, seq: int) -> int | None:
        rows = self._query("SELECT ts FROM ledger_events WHERE seq = ?", (seq,))
        return int(rows[0][0]) if rows else None

    def snapshot_at(self, seq: int) -> SnapshotRow | None:
        rows = self._query(
            "SELECT seq, hash, state FROM ledger_snapshots WHERE seq <= ? "
            "ORDER BY seq DESC LIMIT 1",
            (seq,),
        )
        return SnapshotRow(*rows[0]) if rows else None

    def snapshot_seqs(self) -> list[int]:
        return [r[0] for r in self._query("SELECT seq FROM ledger_snapshots ORDER BY seq")]

    def drop_snapshots(self) -> int:
        with self.write() as txn:
            return txn.drop_snapshots()

    def seq_bounds(self) -> tuple[int, int | None, int | None]:
        count, low, high = self._query("SELECT count(*), min(seq), max(seq) FROM ledger_events")[0]
        return int(count), low, high

    def meta_items(self) -> dict[str, str]:
        # as bytes, as `_meta`: a tampered value that is not UTF-8 must reach the code
        # that checks it (a keyed open reads the key check and head MAC rows this way)
        return {bytes(k).decode("utf-8", "surrogateescape"):
                bytes(v).decode("utf-8", "surrogateescape")
                for k, v in self._query("SELECT CAST(key AS BLOB), CAST(value AS BLOB) "
                                        "FROM ledger_meta")}

    def secret(self, ref: str) -> SecretRow | None:
        rows = self._query(
            "SELECT ref, sealed, created_seq, shredded_seq FROM ledger_secrets WHERE ref = ?",
            (ref,),
        )
        return SecretRow(*rows[0]) if rows else None

    def secrets(self) -> Iterator[SecretRow]:
        return iter(
            SecretRow(*r)
            for r in self._query(
                "SELECT ref, sealed, created_seq, shredded_seq FROM ledger_secrets ORDER BY ref"
            )
        )

    def get_meta(self, key: str) -> str | None:
        try:
            with self._lock:
                return _meta(self._conn, key)
        except apsw.Error as err:
            raise _translate(err, self.location, "reading meta") from err

    def size_bytes(self) -> int | None:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file and truncate it (after a shred, so
        the old page images holding the sealed value leave the disk)."""
        try:
            with self._lock:
                self._conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        except apsw.Error as err:
            raise _translate(err, self.location, "checkpointing") from err

    def backup_to(self, target: str | os.PathLike[str]) -> None:
        """A raw, consistent online copy of the whole database file (SQLite's backup
        API) while writers keep running: every page, foreign objects included, so it
        is evidence of what was there (restore keeps the replaced ledger this way).
        The new file is created 0600 without following symlinks, and left in rollback
        journal mode: one self-contained file, no -wal or -shm beside it."""
        os.close(create_private(Path(target)))
        try:
            dest = apsw.Connection(str(target), flags=apsw.SQLITE_OPEN_READWRITE)
            try:
                with self._lock, dest.backup("main", self._conn, "main") as b:
                    while not b.done:
                        b.step(1024)
                dest.pragma("journal_mode", "delete")
            finally:
                dest.close()
        except apsw.Error as err:
            raise _translate(err, str(target), "writing a backup") from err

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """This database's write turn held without a transaction: no writer of this or
        any other process (each takes the write queue before its transaction) commits
        until the block ends. A restore checks the head, keeps the ledger it replaces
        and swaps the copy in within one turn, so no acknowledged write falls between."""
        with self._lock:
            queue = self._queue
            if queue is None:
                # writers go without the queue then, and none would be held (a file
                # another user planted at its name, a folder this process cannot write)
                raise StoreError(f"{self.location}: the write queue {self.path}.lock cannot "
                                 "be used, so other writers cannot be held while the ledger "
                                 "is replaced; nothing was changed. Remove that file if it "
                                 "is not this ledger's owner's, and try again")
            if not queue.take(self._fair_wait.timeout_s):
                raise StoreBusyError(f"{self.location}: the ledger is locked by another "
                                     "writer")
            try:
                yield
            finally:
                queue.give()

    def replace_with(self, source: Backend) -> None:
        """Replace this database's whole content with `source`'s, a fresh ledger built
        by this backend (SQLite's backup API, holding the write lock: other connections
        see the new content at once, all of it or none)."""
        if self.read_only:
            raise ReadOnlyError(f"{self.location}: the ledger was opened read-only")
        if not isinstance(source, SqliteBackend):
            raise StoreError(f"{self.location}: can only be replaced by another SQLite ledger")
        try:
            with self._lock, self._conn.backup("main", source._conn, "main") as b:
                while not b.done:
                    b.step(1024)
        except apsw.Error as err:
            raise _translate(err, self.location, "restoring") from err

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._queue is not None:
                self._queue.close()
                self._queue = None
