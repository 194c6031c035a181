"""The PostgreSQL backend (psycopg 3 + psycopg-pool), for several gateways sharing one ledger.

Same tables and semantics as the SQLite backend, prefixed `ledger_`, inside one
PostgreSQL schema (`schema=`, default "public"), plus a one-row `ledger_head` table that
holds the chain head (seq, hash, ts).

Serialization. The log is one global hash chain, so appends must serialize: every
locked write transaction starts by taking the ledger's append lock, a transaction-level
advisory lock (`pg_advisory_xact_lock`, keyed by the schema; taking it writes nothing),
then the head row's lock (`FOR UPDATE`), and reads the head row and the event with the
highest seq, all in one message; if the two differ (an event inserted after the head
row without the key, a row moved back), the write is refused before the engine sees
any head, so a stray event is never folded into a served state. That keeps
seq order equal to commit order: the writer of seq N+1 cannot take the lock until the
writer of seq N has committed or rolled back, so a reader that sees event N+1 always
sees event N too, and a tailing reader (watch, catch-up) never skips an event that
commits late. A sequence, or inserting without the lock and letting the primary key
sort it out, would hand out numbers in one order and commit them in another. Readers
never wait. The lock is not what keeps the chain linear, though: every append
statement moves the `ledger_head` row from the event's parent to the event in the same
statement (and fails if the row was not the parent), and the primary key on seq refuses
a second event at a seq; a writer that bypassed the lock could fail, never fork or hole
the chain. The head row stays what readers poll (`changed()`) and what `verify` checks
against the log. A writer of an older version serializes on that row's lock alone:
because this one takes the row lock too (after the advisory lock, so writers of this
version never queue on it for each other), a rolling upgrade's writers wait for each
other instead of failing the append guard as if the row had been tampered with.
Reads made on a write's connection (a secret or meta value set earlier in a group
commit) first send what the transaction queued, so they see its own writes.

Two ways through the lock (see `_PgTxn`):

- locked: `BEGIN; SELECT pg_advisory_xact_lock(...); SELECT <last event>` (one
  message); the statements after it are queued and sent with the COMMIT in one
  pipeline: two round trips for a locked write, a group commit's included;
- optimistic, for the async stores' first try (`wait=False`): the engine builds the
  event on the head this process last saw, and the whole append is then one autocommit
  statement that takes the lock only if it is free (`pg_try_advisory_xact_lock`), moves
  the head row only if it is still the event's parent, inserts the event only if it
  moved, and notifies. One round trip, fewer than a bare `BEGIN; INSERT; COMMIT`. If
  the head moved or the lock is held, nothing is written and StoreBusyError sends
  `run_write` to the locked way (in a thread).

When writers in several processes collide, the fast first try mostly fails, and its
round trip steals time from the writer holding the lock; so for a second after a
collision `wait=False` says busy at once, and writes go the locked way, where the lock
message also fetches the events appended meanwhile (the engine's catch-up, which would
otherwise be one more round trip under the lock).

Integrity in the database: UPDATE, DELETE and TRUNCATE of events are refused by
triggers. The engine's statements only insert an event whose seq and prev_hash follow
the head row, and move the row in the same statement; any other INSERT (psql, another
tool) goes through a BEFORE INSERT trigger that does the same check and move, so it
cannot fork or hole the chain either. The engine's sessions skip that trigger (it would
repeat their own check, at ~13% of an append's time) by setting `moltis_ledger.engine`.

Change detection (`changed()`) reads the head row: one single-row read, ~25 µs over
loopback. A LISTEN-fed flag would be cheaper but only eventually right: a notification
reaches the listener some time after the commit, and a dropped listening connection
would freeze every reader's view without anyone noticing. Reading the row keeps the
guarantee SQLite's data_version gives: once another gateway's write has returned, every
later read here sees it. `PostgresConfigStore.watch` uses LISTEN/NOTIFY to wake up, with
the table as the source of truth.

psycopg and psycopg-pool are an optional extra, imported only when a backend is opened;
their absence raises BackendUnavailableError with the install hint.

This module is long because it holds one backend whole (the pool and its reset, the
one-round-trip append, the queued locked transaction, reads, snapshots, LISTEN/NOTIFY
and the translation of every driver error); its SQL text lives apart in `pg_sql.py`.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import blake3

from ledger._log import get_logger
from ledger.backends.base import (
    CREATED_FORMAT,
    EMPTY_HEAD,
    HEAD_MAC,
    HEAD_SIGNATURE,
    Backend,
    Changes,
    Head,
    SecretRow,
    SnapshotRow,
    changes_of,
    format_needed,
    raise_format,
    refuse_newer_format,
    rows_of,
)
from ledger.backends.pg_sql import ENGINE_GUC, Sql
from ledger.core.chain import GENESIS
from ledger.core.events import Record, Row, now_us
from ledger.errors import (
    BackendUnavailableError,
    ConflictError,
    OutcomeUnknownError,
    ReadOnlyError,
    StoreBusyError,
    StoreError,
)

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["MAX_PAGE", "PostgresBackend", "first_line", "redact_dsn"]

_log = get_logger("ledger.backends.postgres")

INSTALL_HINT: Final = "pip install 'moltis-config-ledger[postgres]'"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,54}")  # + "ledger_" stays within 63 bytes
_TABLES: Final = ("ledger_meta", "ledger_events", "ledger_head", "ledger_snapshots",
                  "ledger_secrets")
_TRIGGERS: Final = ("ledger_events_no_update", "ledger_events_no_delete",
                    "ledger_events_no_truncate", "ledger_events_gap_free")
_FIRST_PAGE: Final = 256  # rows of the first page of a read (catch-up reads are short)
MAX_PAGE: Final = 4096
_CONTENDED_FOR: Final = 1.0  # seconds without a fast first try, once writers collide
_PREFETCH: Final = 64  # events read with the lock, for the engine to catch up on
# Up to this many events of one transaction are queued as one self-checking statement
# each; a larger batch (copying a ledger) is one head move and one executemany.
_QUEUED_EVENTS: Final = 64


def _driver() -> tuple[Any, Any]:
    """psycopg and psycopg_pool, or BackendUnavailableError with the install hint."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError as err:
        raise BackendUnavailableError(
            f"the postgres backend needs psycopg 3 and psycopg-pool ({err.name} is not "
            f"installed): {INSTALL_HINT}"
        ) from err
    return psycopg, psycopg_pool


def redact_dsn(dsn: str) -> str:
    """The DSN as `postgresql://user@host:port/dbname`, never with its password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)
    except Exception:  # an unparseable DSN must not be echoed either
        return "postgresql://(unparseable DSN)"
    user = params.get("user")
    host = str(params.get("host") or params.get("hostaddr") or "")
    port = params.get("port")
    dbname = params.get("dbname") or ""
    if host.startswith("/"):  # a unix socket folder
        return f"postgresql://{f'{user}@' if user else ''}/{dbname}?host={host}"
    netloc = f"{f'{user}@' if user else ''}{host}{f':{port}' if port else ''}"
    return f"postgresql://{netloc}/{dbname}"


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _translate(err: BaseException, location: str, doing: str, idle_ms: int = 0
               ) -> StoreError:
    """Map a psycopg / psycopg-pool error to the library's tree, naming the DSN (without
    its password). Done once, here, at the boundary. `idle_ms`: the session's
    idle_in_transaction_session_timeout, named when the server ended a write by it."""
    state = str(getattr(err, "sqlstate", None) or "")
    msg = first_line(err)
    if state == "25P03":
        # The server fires this timeout only while it waits, idle, for the transaction's
        # next statement: the COMMIT had not run, and ending the session rolled the
        # transaction back. The connection is dead; the pool discards it.
        bound = f" ({idle_ms / 1000:g} s)" if idle_ms else ""
        return StoreError(
            f"{location}: the server ended the write after it sat idle in its transaction "
            f"longer than idle_in_transaction_session_timeout{bound}: nothing was written. "
            "The work done inside the write (an update function, a snapshot rebuild) took "
            "that long, or this process was stalled; make that work quicker, or raise "
            "busy_timeout (the bound is the larger of 30 s and 4 busy timeouts), then "
            "write again")
    if state == "55P03":  # lock_not_available: NOWAIT, or lock_timeout expired
        return StoreBusyError(f"{location}: the ledger is locked by another writer ({doing})")
    if state in ("40001", "40P01"):  # serialization failure, deadlock
        return StoreBusyError(f"{location}: {doing} conflicted with another transaction; "
                              "try again")
    if state == "57014":  # query_canceled (statement_timeout)
        return StoreBusyError(f"{location}: {doing} was cancelled: {msg}")
    if state == "25006":  # read_only_sql_transaction (read-only mode, hot standby)
        return ReadOnlyError(f"{location}: the database is read-only ({doing})")
    if state == "42501":  # insufficient_privilege
        return ReadOnlyError(f"{location}: permission denied ({doing}): {msg}")
    if state == "22012":  # the append statement's guard: the head moved, no row went in
        return StoreError(f"{location}: {doing} failed: the event was not stored (something "
                          "in the database discards inserts into ledger_events); nothing "
                          "was written")
    if state == "2201E":  # the locked append's guard (ln(0)): the head row is not the log's end
        return StoreError(f"{location}: {doing} failed: the head row does not match the last "
                          "event of the log (the head row is behind the log or was changed: "
                          "tampered or damaged; or a writer of an older version appended at "
                          "the same time); run `moltis-ledger verify`; nothing was written")
    if state == "23505":  # unique_violation: an event that already exists
        return StoreError(f"{location}: {doing} failed: that event already exists, so the "
                          "head row is behind the log (tampered or damaged); run "
                          "`moltis-ledger verify`; nothing was written")
    if state == "53100":
        return StoreError(f"{location}: the disk is full ({doing}); nothing was written")
    _, pool = _driver()  # loaded already: only driver errors come here
    if isinstance(err, pool.PoolTimeout):
        return StoreError(f"{location}: no database connection became available ({doing}): "
                          f"{msg}")
    if state.startswith("08") or (not state and _unreachable(err)):
        return StoreError(f"{location}: cannot reach the database ({doing}): {msg}")
    return StoreError(f"{location}: {doing} failed: {msg}")


def _unreachable(err: BaseException) -> bool:
    """Whether `err`, a driver error without a SQLSTATE, says the server cannot be
    reached or the connection is gone. By class, subclasses included: psycopg raises
    ConnectionTimeout (an OperationalError) for a server that does not answer, and may
    add others; matching the exact name missed them. Not the OperationalErrors that say
    nothing about the server: a statement after a failed one in a pipeline, and the
    pool's own states (timed out, closed, too many waiting), which are this process's."""
    driver, pool = _driver()  # loaded already: only driver errors come here
    if isinstance(err, driver.errors.PipelineAborted | pool.PoolTimeout | pool.PoolClosed
                  | pool.TooManyRequests):
        return False
    return isinstance(err, driver.OperationalError)


def _connection_lost(err: BaseException) -> bool:
    """Whether `err` says the connection itself is gone (the server ended it, a network
    cut, a server restart), not that a statement failed on a live one."""
    state = str(getattr(err, "sqlstate", None) or "")
    if state:
        # connection exceptions; admin shutdown, crash shutdown, cannot connect now
        return state.startswith("08") or state in ("57P01", "57P02", "57P03")
    # InterfaceError: psycopg's "the connection is closed" kind
    return _unreachable(err) or isinstance(err, _driver()[0].InterfaceError)


def _last_result(cur: psycopg.Cursor[Any]) -> psycopg.Cursor[Any]:
    """After a multi-statement simple query, move to the result that returned rows."""
    while cur.description is None and cur.nextset():
        pass
    return cur


def _advisory_key(schema: str, purpose: str = "schema") -> int:
    """A lock key of this ledger: creating its tables ("schema"), appending ("append")."""
    digest = blake3.blake3(f"moltis-config-ledger {purpose} {schema}".encode()).digest(8)
    return int.from_bytes(digest, "big", signed=True)


def _row(r: Record) -> tuple[Any, ...]:
    return (r.seq, r.ts, r.actor, r.reason, r.source, r.kind, r.payload, r.prev_hash, r.hash)


def _named(r: Record) -> dict[str, Any]:
    return {"seq": r.seq, "ts": r.ts, "actor": r.actor, "reason": r.reason, "source": r.source,
            "kind": r.kind, "payload": r.payload, "prev_hash": r.prev_hash, "hash": r.hash}


class _PgTxn:
    """One write transaction on one connection.

    Locked (`wait=True`, or when this backend has not seen the head yet): BEGIN, the
    append lock and the head (the log's last event) come first, as one message. What
    the transaction writes after that is queued, and sent with its COMMIT in one
    pipeline at the end: two round trips for a locked write, whatever it holds (a group
    of events, their snapshot, secrets, the signed head). Every queued statement checks
    itself and fails when its check does not hold, which aborts the transaction before
    the COMMIT runs. A step that needs an answer at once (a shred's row count) sends
    what is queued first.

    Optimistic (`wait=False`): `head()` is the head this backend last saw and nothing is
    sent until the commit, which is one autocommit statement (`Sql.append_one`). Any
    step other than appending one event (a snapshot, a secret, meta) first turns it into
    a locked transaction, checking under the lock that the head is still the one the
    engine built on; if not, StoreBusyError, with nothing written.

    `savepoint()` (one event of a group commit) costs no round trip: a scope that fails
    drops what it queued; only if something had to be sent inside it does it become a
    server-side SAVEPOINT, rolled back the same way.
    """

    __slots__ = ("_b", "_base", "_conn", "_cur", "_head", "_locked", "_mark", "_meta", "_ops",
                 "_pending", "_pending_meta", "_wait")

    def __init__(self, backend: PostgresBackend, conn: psycopg.Connection[Any],
                 cur: psycopg.Cursor[Any], wait: bool, known: Head | None) -> None:
        self._b = backend
        self._conn = conn
        self._cur = cur
        self._wait = wait
        self._locked = False
        self._pending: Record | None = None
        self._pending_meta: tuple[str, str] | None = None  # written with the pending event
        self._ops: list[tuple[str, Any]] = []  # queued statements (locked)
        self._meta: dict[str, str | None] = {}  # queued in this transaction (None: deleted)
        self._mark: _Mark | None = None  # the open savepoint
        self._base = self._head = known if known is not None else EMPTY_HEAD
        if wait or known is None:
            self._base = self._head = self._lock()

    @property
    def optimistic(self) -> bool:
        return not self._locked

    @property
    def active(self) -> bool:
        """False once the server aborted the transaction (an error outside any savepoint,
        or a savepoint that could not be rolled back to): PostgreSQL then refuses every
        statement until the ROLLBACK, and the group commit fails the whole group
        (`Ledger._check_group_alive`). A local libpq status, no round trip."""
        status = self._conn.info.transaction_status
        return status != status.INERROR

    def based_on(self, head: Head) -> bool:
        """Is `head` the one this transaction started from?"""
        return (head.seq, head.hash) == (self._base.seq, self._base.hash)

    def _lock(self) -> Head:
        b = self._b
        sql, known = b._sql, b._known
        self._locked = True  # from here on, a failure must roll back
        # BEGIN, the lock and the head travel in one message (one round trip), with the
        # events appended since this process last saw the head: the engine reads them
        # next, to catch up, and the lock is held meanwhile. In READ COMMITTED each
        # statement after the lock sees every commit made before the lock was granted
        # (`known.seq` is an int, safe in the text).
        # The head row (locked: see Sql.head_row_wait) is read before the last event, so
        # the last event's snapshot sees the commit of a writer that held the row lock.
        text = (f"{sql.lock_wait}; {sql.head_row_wait}" if self._wait
                else f"{sql.lock_try}; {sql.head_row_try}") + f"; {sql.last_event}"
        if known is not None:
            text += (f"; {sql.select} WHERE seq > {int(known.seq)} ORDER BY seq "
                     f"LIMIT {_PREFETCH}")
        cur = _last_result(self._cur.execute(text))
        got = cur.fetchone()
        if not self._wait and got is not None and got[0] is not True:
            raise StoreBusyError(f"{b.location}: the ledger is locked by another writer")
        cur.nextset()
        stored = cur.fetchone()
        cur.nextset()
        row = cur.fetchone()
        head = Head(row[0], row[1], row[2]) if row is not None else EMPTY_HEAD
        if stored is None or (stored[0], bytes(stored[1])) != (head.seq, bytes(head.hash)):
            # An event after the head row that nothing vouches for (inserted without the
            # key), or a row moved back: refuse before any head reaches the engine, which
            # would otherwise fold the stray events to catch up (review B, finding 1).
            said = "is missing" if stored is None else f"says event {stored[0]}"
            raise StoreError(
                f"{b.location}: the head row does not match the last event of the log (the "
                f"head row {said}, the log ends at event {head.seq}): the head row is "
                "behind the log or was changed, or events were inserted without the ledger "
                "key (tampered or damaged); run `moltis-ledger verify`; nothing was written")
        if known is not None and cur.nextset():
            b._in_write.prefetch = (known.seq, [Record(*r) for r in cur.fetchall()])
            b._note_contention(head.seq != known.seq or head.hash != known.hash)
        return head

    def _upgrade(self) -> None:
        if self._locked:
            return
        head = self._lock()
        if not self.based_on(head):
            raise StoreBusyError(f"{self._b.location}: another writer appended (head "
                                 f"{head.seq}, expected {self._base.seq}); retry")
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._queue_append(self._base, [pending])
            if self._pending_meta is not None:
                key, value = self._pending_meta
                self._pending_meta = None
                self._queue(self._b._sql.set_meta, (key, value))
                self._meta[key] = value

    def _queue(self, sql: str, params: Any) -> None:
        self._ops.append((sql, params))

    def _send(self, *, commit: bool = False) -> None:
        """Send what is queued (and the COMMIT) in one pipeline: one round trip. The
        first statement that fails raises here, and the transaction is aborted."""
        ops, self._ops = self._ops, []
        mark = self._mark
        if mark is not None and not mark.sent and mark.at < len(ops):
            # something written inside the open savepoint reaches the server: make the
            # savepoint real, so a failure can still undo only that scope
            ops.insert(mark.at, ("SAVEPOINT ledger_append", None))
            mark.sent = True
        if mark is not None:
            mark.at = 0
        if not ops:
            if commit:
                self._conn.commit()
            return
        if len(ops) == 1 and not commit:
            self._cur.execute(ops[0][0], ops[0][1], prepare=ops[0][1] is not None)
            return
        with self._conn.pipeline():
            for sql, params in ops:
                self._cur.execute(sql, params, prepare=params is not None)
            if commit:
                self._cur.execute("COMMIT")

    def flush(self) -> None:
        """Send what is queued now (before a read on this transaction's connection)."""
        if self._ops:
            self._send()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested scope (one event of a group commit): what it wrote is undone if it
        raises, and the transaction goes on."""
        self._upgrade()
        mark = self._mark = _Mark(len(self._ops), self._head, dict(self._meta))
        try:
            yield
        except BaseException:
            self._mark = None
            self._head, self._meta = mark.head, mark.meta
            if mark.sent:
                del self._ops[:]  # queued after what was sent: never reaches the server
                self._cur.execute("ROLLBACK TO SAVEPOINT ledger_append; "
                                  "RELEASE SAVEPOINT ledger_append")
            else:
                del self._ops[mark.at:]
            raise
        self._mark = None
        if mark.sent:
            self._queue("RELEASE SAVEPOINT ledger_append", None)

    def head(self) -> Head:
        return self._head

    def append(self, records: Sequence[Record]) -> None:
        if not records:
            return
        if (need := format_needed(records)) > CREATED_FORMAT:
            # reading the version takes the lock: such an event is never optimistic
            raise_format(self, need, self._b.location)
        if not self._locked and self._pending is None and len(records) == 1:
            self._pending = records[0]
        else:
            self._upgrade()
            self._queue_append(self._head, records)
        last = records[-1]
        self._head = Head(last.seq, last.hash, last.ts)

    def _queue_append(self, head: Head, records: Sequence[Record]) -> None:
        sql, first, last = self._b._sql, records[0], records[-1]
        expected, prev = head.seq + 1, head.hash
        for r in records:
            if r.seq != expected or r.prev_hash != prev:
                raise StoreError(f"{self._b.location}: event {r.seq} does not follow "
                                 f"event {expected - 1} of this transaction")
            expected, prev = expected + 1, r.hash
        if len(records) <= _QUEUED_EVENTS:
            # each statement moves the head row and inserts its event, or fails
            for r in records:
                self._queue(sql.append_locked, _named(r))
            return
        # a batch (copying a ledger): one head move and one executemany, sent now
        self._send()
        self._cur.execute(sql.move_head, (last.seq, last.hash, last.ts, head.seq,
                                          first.prev_hash))
        if self._cur.rowcount != 1:
            raise StoreError(f"{self._b.location}: event {first.seq} does not link to the "
                             f"head (event {head.seq})")
        self._cur.executemany(sql.insert, [_row(r) for r in records])
        # A foreign BEFORE INSERT trigger returning NULL stores nothing without an
        # error, and the head row has moved: count the rows that went in (the single
        # statements' 1/0 guard does this for each queued event).
        self._cur.execute(sql.count_range, (first.seq, last.seq))
        if (row := self._cur.fetchone()) is None or row[0] != len(records):
            raise StoreError(f"{self._b.location}: {len(records)} event(s) were not stored "
                             "(something in the database discards inserts into ledger_events)")
        self._cur.execute(sql.notify, (str(last.seq),))

    def _commit(self) -> None:
        if self._locked:
            self._send(commit=True)
        elif self._pending is not None:
            r = self._pending
            if self._pending_meta is None:
                row = self._cur.execute(self._b._sql.append_one, _named(r), prepare=True
                                        ).fetchone()
            else:
                key, value = self._pending_meta
                row = self._cur.execute(self._b._sql.append_one_signed,
                                        {**_named(r), "meta_key": key, "meta_value": value},
                                        prepare=True).fetchone()
            if row is None:
                raise StoreBusyError(f"{self._b.location}: another writer appended first; "
                                     "retry")

    def _abort(self) -> None:
        self._ops = []
        if self._locked:
            self._b._rollback(self._conn)

    def put_snapshot(self, seq: int, hash: bytes, state: bytes) -> None:
        self._upgrade()
        self._queue(self._b._sql.put_snapshot, (seq, hash, state))

    def put_secret(self, ref: str, sealed: bytes, created_seq: int) -> None:
        self._upgrade()
        self._queue(self._b._sql.put_secret, (ref, sealed, created_seq))

    def _now(self, sql: str, params: tuple[Any, ...] | None = None) -> int:
        """Run a statement whose row count the caller needs, after what is queued."""
        self._upgrade()
        self._send()
        self._cur.execute(sql, params)
        return self._cur.rowcount

    def shred_secret(self, ref: str, seq: int) -> bool:
        return self._now(self._b._sql.shred, (seq, ref)) > 0

    def reseal_secret(self, ref: str, sealed: bytes) -> bool:
        return self._now(self._b._sql.reseal, (sealed, ref)) > 0

    def set_meta(self, key: str, value: str) -> None:
        if (key in (HEAD_MAC, HEAD_SIGNATURE) and not self._locked
                and self._pending is not None and self._pending_meta is None):
            # the MAC'd (or signed) head of the pending event: it travels in the append
            # statement (a second one, a checkpoint's signature, takes the lock)
            self._pending_meta = (key, value)
            return
        self._upgrade()
        self._queue(self._b._sql.set_meta, (key, value))
        self._meta[key] = value

    def delete_meta(self, key: str) -> None:
        self._upgrade()
        self._queue(self._b._sql.delete_meta, (key,))
        self._meta[key] = None

    def get_meta(self, key: str) -> str | None:
        self._upgrade()
        if key in self._meta:  # written in this transaction, still queued
            return self._meta[key]
        row = self._cur.execute(self._b._sql.get_meta, (key,)).fetchone()
        return None if row is None else str(row[0])

    def drop_snapshots(self) -> int:
        return self._now(self._b._sql.drop_snapshots)


class _Mark:
    """An open savepoint: where its queued statements start, and what to restore."""

    __slots__ = ("at", "head", "meta", "sent")

    def __init__(self, at: int, head: Head, meta: dict[str, str | None]) -> None:
        self.at, self.head, self.meta, self.sent = at, head, meta, False


class PostgresBackend:
    """A ledger in one PostgreSQL schema, shared safely by many processes.

    :param dsn: a libpq connection string or `postgresql://` URL.
    :param schema: the PostgreSQL schema holding the `ledger_*` tables (created if
        missing): lowercase letters, digits and `_`.
    :param read_only: every connection is `default_transaction_read_only`; writes raise
        ReadOnlyError, and a missing ledger is not created.
    :param pool_size: at most this many pooled connections (one is opened up front).
    :param busy_timeout: seconds a writer waits for the head row lock before
        StoreBusyError (PostgreSQL's lock_timeout).
    """

    name = "postgres"

    def __init__(self, dsn: str, *, schema: str = "public", read_only: bool = False,
                 pool_size: int = 4, busy_timeout: float = 5.0) -> None:
        pg_module, pool_module = _driver()
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema {schema!r} must be a lowercase identifier "
                             "([a-z_][a-z0-9_]*, at most 55 characters)")
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        self._psycopg = pg_module
        self._errors: tuple[type[BaseException], ...] = (pg_module.Error,
                                                         pool_module.PoolTimeout)
        self.dsn = dsn
        self.schema = schema
        self.read_only = read_only
        self.read_only_reason = ""
        self.location = redact_dsn(dsn) + ("" if schema == "public" else f" schema={schema}")
        self.channel = f"ledger_{schema}"
        self._busy_ms = max(1, int(busy_timeout * 1000))
        # a writer cut off mid-transaction (a partition: no FIN, no RST) holds the append
        # lock until the server ends its session: bounded by this, not by TCP
        # keepalive's hours (review r19). Ample for our own transactions, whose longest
        # pause between statements is Python work (a replay when snapshots are rebuilt)
        self._idle_ms = max(30_000, 4 * self._busy_ms)
        # the advisory lock key appends serialize on (another tool that writes events
        # takes it too: `SELECT pg_advisory_xact_lock(<key>)` in its transaction)
        self.append_lock = _advisory_key(schema, "append")
        self._sql = Sql(schema, self.append_lock)
        self._seen: tuple[int, bytes] | None = None
        self._seen_lock = threading.Lock()
        self._known: Head | None = None  # the head as this backend last saw it
        self._contended_until = 0.0  # no fast first try until then (monotonic)
        # One connection stays checked out for writes (when the pool has room for
        # readers besides): the pool's hand-over costs a few percent of an append. A
        # second concurrent writer in this process (rare: the engine serializes its own)
        # borrows from the pool.
        self._keep_writer = pool_size > 1
        self._writer_lock = threading.Lock()
        # the connection of the write this thread is in: reads made while writing (the
        # engine catching up under the lock) use it, and see what the lock protects
        self._in_write = threading.local()
        self._writer: tuple[psycopg.Connection[Any], psycopg.Cursor[Any]] | None = None
        self._connect_kwargs = self._default_kwargs(dsn)
        try:
            conn = pg_module.connect(dsn, autocommit=True, **self._connect_kwargs)
        except self._errors as err:
            raise _translate(err, self.location, "connecting") from err
        try:
            self._prepare(conn)
        except self._errors as err:
            raise _translate(err, self.location, "opening the ledger") from err
        finally:
            conn.close()
        self._pool: psycopg_pool.ConnectionPool[Any] = pool_module.ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, **self._connect_kwargs},
            configure=self._configure,
            reset=self._reset,
            name=f"moltis-config-ledger:{schema}",
            timeout=max(30.0, busy_timeout * 2),
            num_workers=1,
            open=True,
        )

    @property
    def driver_errors(self) -> tuple[type[BaseException], ...]:
        """The driver's exception types (for code that talks to a connection of its own,
        such as a LISTEN connection)."""
        return self._errors

    # -- setup -----------------------------------------------------------------------

    def _default_kwargs(self, dsn: str) -> dict[str, Any]:
        from psycopg.conninfo import conninfo_to_dict

        try:
            given = conninfo_to_dict(dsn)
        except self._errors as err:
            raise StoreError(f"{self.location}: not a valid PostgreSQL DSN: "
                             f"{first_line(err)}") from None
        kwargs: dict[str, Any] = {}
        if "connect_timeout" not in given:
            kwargs["connect_timeout"] = 10
        if "application_name" not in given:
            kwargs["application_name"] = "moltis-config-ledger"
        return kwargs

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Session settings of every pooled connection (set once, not per write)."""
        conn.execute(f"SET lock_timeout = {self._busy_ms}")
        conn.execute(f"SET idle_in_transaction_session_timeout = {self._idle_ms}")
        conn.execute(f"SET {ENGINE_GUC} = 'on'")
        if self.read_only:
            conn.execute("SET default_transaction_read_only = on")

    @staticmethod
    def _reset(conn: psycopg.Connection[Any]) -> None:
        """Every connection goes back to the pool in a known state: out of any
        transaction, autocommit on (an append's optimistic path is one autocommit
        statement: with autocommit off it would sit in an open transaction and its
        acknowledged write could vanish). psycopg-pool discards a connection this raises
        on."""
        if conn.info.transaction_status != conn.info.transaction_status.IDLE:
            conn.rollback()
        if not conn.autocommit:
            conn.autocommit = True

    def _format_version(self, conn: psycopg.Connection[Any], tables: set[str]) -> int | None:
        if "ledger_meta" not in tables:
            return None
        row = conn.execute(self._sql.get_meta, ("format_version",)).fetchone()
        if row is None:
            return None
        try:
            return int(row[0])
        except ValueError:
            raise StoreError(f"{self.location}: unreadable format version {row[0]!r}") from None

    def _refuse_newer(self, version: int | None) -> None:
        refuse_newer_format(self.location, version)

    def _inspect(self, conn: psycopg.Connection[Any]) -> tuple[set[str], dict[str, bool]]:
        """The ledger tables present, and the ledger triggers present (name -> enabled)."""
        tables = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' "
            "AND c.relname = ANY(%s)", (self.schema, list(_TABLES)))}
        triggers = {r[0]: r[1] != "D" for r in conn.execute(
            "SELECT t.tgname, t.tgenabled FROM pg_catalog.pg_trigger t "
            "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'ledger_events' AND t.tgname = ANY(%s)",
            (self.schema, list(_TRIGGERS)))}
        return tables, triggers

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        # The format check comes first and only reads: a ledger written by a newer
        # version must not be touched at all.
        tables, triggers = self._inspect(conn)
        self._refuse_newer(self._format_version(conn, tables))
        complete = (set(_TABLES) <= tables and all(triggers.get(t) for t in _TRIGGERS)
                    and self._format_version(conn, tables) is not None
                    and conn.execute(self._sql.has_head_row).fetchone() == (1,))
        if complete:
            return
        if self.read_only:
            if {"ledger_events", "ledger_meta", "ledger_head"} <= tables:
                return  # a writer will restore what is missing; reading is fine
            raise ReadOnlyError(f"{self.location}: no ledger tables here (opened read-only)")
        self._create(conn)

    def _create(self, conn: psycopg.Connection[Any]) -> None:
        """Create what is missing, idempotently. A transaction-level advisory lock makes
        processes that start at once take turns (CREATE ... IF NOT EXISTS alone races
        on the catalog's unique indexes); the second finds everything there. Dropped or
        disabled triggers come back here the next time a writer opens the ledger."""
        import uuid

        with conn.transaction():
            conn.execute("SET LOCAL client_min_messages = warning")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_advisory_key(self.schema),))
            exists = conn.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s",
                                  (self.schema,)).fetchone()
            if exists is None:
                conn.execute(f'CREATE SCHEMA "{self.schema}"')
            tables, triggers = self._inspect(conn)
            self._refuse_newer(self._format_version(conn, tables))
            if not set(_TABLES) <= tables:
                conn.execute(self._sql.tables)
            if not all(triggers.get(t) for t in _TRIGGERS):
                conn.execute(self._sql.functions)
                for name, create in self._sql.triggers.items():
                    if name not in triggers:
                        conn.execute(create)
                    elif not triggers[name]:
                        conn.execute(self._sql.enable_trigger.format(name))
            conn.execute(self._sql.init_head)
            conn.execute(self._sql.init_empty_head, (GENESIS,))
            conn.execute(self._sql.init_meta,
                         (str(CREATED_FORMAT), uuid.uuid4().hex, str(now_us())))
        _log.info("ledger tables ready", location=self.location)

    # -- writes ----------------------------------------------------------------------

    def group_key(self) -> tuple[object, ...]:
        """Which ledgers of this process may commit in one group: those on the same
        database and schema (see `ledger.engine.group_commit`)."""
        return ("postgres", self.dsn, self.schema)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Cursor[Any]]]:
        """The writer connection, or a pooled one if another thread is writing."""
        mine = self._writer_lock.acquire(blocking=False)
        try:
            held = self._writer if mine else None
            if held is None:
                try:
                    conn: psycopg.Connection[Any] = self._pool.getconn()
                except self._errors as err:
                    raise _translate(err, self.location, "starting a write") from err
                held = (conn, conn.cursor())
            try:
                yield held
            finally:
                if mine and self._keep_writer and not held[0].closed and not held[0].broken:
                    self._writer = held
                else:
                    if held is self._writer:
                        self._writer = None
                    self._pool.putconn(held[0])
        finally:
            if mine:
                self._writer_lock.release()

    @contextlib.contextmanager
    def write(self, *, wait: bool = True, while_waiting: Callable[[], object] | None = None
              ) -> Iterator[_PgTxn]:
        # `while_waiting` is not called: the wait is one blocking statement on the server
        if self.read_only:
            raise ReadOnlyError(self.read_only_reason
                                or f"{self.location}: the ledger was opened read-only")
        if not wait and time.monotonic() < self._contended_until:
            # Other processes are writing: a fast first try would most likely build on a
            # stale head or find the lock held, and its round trip would slow the writer
            # holding the lock. Say busy at once: run_write then waits in a thread.
            raise StoreBusyError(f"{self.location}: other writers are active")
        lost: tuple[BaseException, Head, Head] | None = None
        with self._connection() as (conn, cur):
            txn: _PgTxn | None = None
            outer = getattr(self._in_write, "conn", None)
            outer_txn = getattr(self._in_write, "txn", None)
            self._in_write.conn = conn
            self._in_write.txn = None
            self._in_write.prefetch = None
            committing = False
            try:
                txn = self._in_write.txn = _PgTxn(self, conn, cur, wait, self._known)
                start = txn.head()
                try:
                    yield txn
                except ConflictError as err:
                    # expected_seq was checked against the head this process last saw;
                    # if that was stale, the conflict may not be real: retry locked
                    if txn.optimistic and not txn.based_on(self.head()):
                        raise StoreBusyError(f"{self.location}: the head moved; retry "
                                             "under the lock") from err
                    raise
                committing = True
                txn._commit()
                self._known = txn.head()
            except BaseException as err:
                if txn is not None:
                    txn._abort()
                else:
                    self._rollback(conn)
                if isinstance(err, StoreBusyError) or getattr(err, "sqlstate", "") == "55P03":
                    self._note_contention(True)
                if not (isinstance(err, self._errors) and _connection_lost(err)):
                    if isinstance(err, self._errors):
                        raise _translate(err, self.location, "writing",
                                         self._idle_ms) from err
                    raise
                if not committing or txn is None:
                    self._discard_dead()
                    raise self._lost(err, wait, "before the write was sent") from err
                lost = (err, start, txn.head())  # told apart below, off this connection
            finally:
                self._in_write.conn = outer
                self._in_write.txn = outer_txn
                self._in_write.prefetch = None
        if lost is not None:
            self._settle_lost(*lost, wait)

    def _settle_lost(self, cause: BaseException, start: Head, head: Head, wait: bool) -> None:
        """A write whose connection was lost while its commit was on its way: returns if
        it committed (only its reply was lost), else raises what became of it."""
        if self._committed(cause, start, head):
            self._known = head
            _log.info("the connection was lost after a write committed; it is in the log",
                      location=self.location, seq=head.seq)
            return
        raise self._lost(cause, wait, f"before the write committed (event {head.seq} is not "
                                      "in the log)") from cause

    def _lost(self, err: BaseException, wait: bool, when: str) -> StoreError:
        """The error for a write that lost its connection and is known not written: busy
        for a first try (run_write tries again, on a fresh connection), else plain."""
        message = (f"{self.location}: the connection to the database was lost {when}: "
                   f"nothing was written ({first_line(err)})")
        return StoreBusyError(message) if not wait else StoreError(message + "; try again")

    def _committed(self, err: BaseException, start: Head, head: Head) -> bool:
        """After the connection was lost while a commit was on its way: whether the log
        holds `head`, the write's last event, read on a fresh connection (its hash: the
        chain makes it this write's, all of it). OutcomeUnknownError when that cannot be
        read, or the write appended no event to look for (review r17: a lost reply was
        reported as "nothing was written" to a caller whose write had committed). Read
        under the append lock: the lost transaction holds it until it has committed or
        rolled back, so a commit still under way (a slow fsync, a synchronous standby) is
        waited for, never taken for "not written" and then applied again by a retry
        (review r18); the wait is bounded by lock_timeout (the busy timeout)."""
        self._discard_dead()
        if head.seq > start.seq:
            try:
                # at most the busy timeout: the caller is told "unknown" rather than kept
                # waiting for a database that went away
                conn: psycopg.Connection[Any] = self._pool.getconn(timeout=self._busy_ms / 1000)
                try:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.append_lock,))
                        row = conn.execute(self._sql.hash_at, (head.seq,)).fetchone()
                finally:
                    self._pool.putconn(conn)
            except self._errors as again:
                _log.warning("cannot read back a write whose connection was lost",
                             location=self.location, error=first_line(again))
            else:
                return row is not None and bytes(row[0]) == head.hash
        raise OutcomeUnknownError(
            f"{self.location}: the connection to the database was lost while the write "
            f"was committing ({first_line(err)}), and the log cannot be read to tell "
            "whether it committed: it may have been committed. Check the head "
            "(`moltis-ledger log --limit 1`, or the store's head_seq()) before repeating "
            "it")

    def _discard_dead(self) -> None:
        """Drop the pool's idle connections the server has closed (a restart, a
        terminated backend ends them all), so the next write or read gets a live one."""
        with contextlib.suppress(Exception):  # whatever it meets, the next use reports
            self._pool.check()

    def _note_contention(self, collided: bool) -> None:
        """Writers collided (another process appended, or held the lock): skip fast
        first tries for a while. A locked write that finds nobody else wrote ends it."""
        self._contended_until = time.monotonic() + _CONTENDED_FOR if collided else 0.0

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(*self._errors):
            conn.rollback()

    # -- reads -----------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = (), doing: str = "reading"
               ) -> list[tuple[Any, ...]]:
        writing: psycopg.Connection[Any] | None = getattr(self._in_write, "conn", None)
        if writing is not None:
            txn: _PgTxn | None = getattr(self._in_write, "txn", None)
            try:
                if txn is not None:
                    # What this transaction queued (a secret, meta, a snapshot set
                    # earlier in a group commit) must be visible to its own reads:
                    # send it first (one round trip, only when something is queued).
                    txn.flush()
                return writing.execute(sql, args).fetchall()
            except self._errors as err:
                # a read of a write: the server may have ended it for idling (25P03)
                raise _translate(err, self.location, doing, self._idle_ms) from err
        for attempt in (1, 2):
            try:
                conn: psycopg.Connection[Any] = self._pool.getconn()
            except self._errors as err:
                raise _translate(err, self.location, doing) from err
            try:
                return conn.execute(sql, args).fetchall()
            except self._errors as err:
                if attempt == 1 and _connection_lost(err):
                    # a pooled connection the server closed (a restart, a terminated
                    # backend): a read is safe to repeat, on a live one (review r17)
                    self._discard_dead()
                    continue
                raise _translate(err, self.location, doing) from err
            finally:
                self._pool.putconn(conn)
        raise AssertionError("unreachable")  # the second attempt returns or raises

    def _read_head(self, doing: str) -> Head:
        rows = self._query(self._sql.head, doing=doing)
        head = Head(rows[0][0], rows[0][1], rows[0][2]) if rows else EMPTY_HEAD
        self._known = head
        return head

    def head(self) -> Head:
        return self._read_head("reading the head")

    def changed(self) -> bool:
        head = self._read_head("polling for changes")
        key = (head.seq, head.hash)
        with self._seen_lock:
            if key != self._seen:
                self._seen = key
                return True
            return False

    def read(self, after: int = 0, until: int | None = None, *, descending: bool = False,
             limit: int | None = None) -> Iterator[Record]:
        """Keyset pagination: each page is one short query on a pooled connection, so a
        read of a million events holds neither a million rows nor a connection (an
        abandoned iterator costs nothing). Pages are consistent with each other because
        events are immutable and seq order is commit order."""
        return self._pages(after, until, descending, limit)

    def _pages(self, after: int, until: int | None, descending: bool, limit: int | None
               ) -> Iterator[Record]:
        prefetched = getattr(self._in_write, "prefetch", None)
        if prefetched is not None and not descending and limit is None and until is not None:
            start, records = prefetched
            if start == after and until - after == len(records) and (
                    not records or records[-1].seq == until):
                yield from records  # read with the lock (see _PgTxn._lock)
                return
        lo, hi = after, until
        remaining = limit
        page = _FIRST_PAGE
        order = "DESC" if descending else "ASC"
        while remaining is None or remaining > 0:
            n = page if remaining is None else min(page, remaining)
            where = "seq > %s" if hi is None else "seq > %s AND seq <= %s"
            args: tuple[Any, ...] = (lo, n) if hi is None else (lo, hi, n)
            rows = self._query(f"{self._sql.select} WHERE {where} ORDER BY seq {order} "
                               "LIMIT %s", args, "reading events")
            for row in rows:
                yield Record(*row)
            if len(rows) < n:
                return
            if descending:
                hi = rows[-1][0] - 1
            else:
                lo = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)
            page = min(page * 4, MAX_PAGE)

    def read_rows(self, after: int = 0, until: int | None = None) -> Iterator[Row]:
        return rows_of(self.read(after, until))

    def read_changes(self, after: int = 0, until: int | None = None) -> Changes:
        return changes_of(self, after, until)

    def record(self, seq: int) -> Record | None:
        rows = self._query(self._sql.record, (seq,))
        return Record(*rows[0]) if rows else None

    def ts_of(self, seq: int) -> int | None:
        rows = self._query(self._sql.ts_of, (seq,))
        return int(rows[0][0]) if rows else None

    def snapshot_at(self, seq: int) -> SnapshotRow | None:
        rows = self._query(self._sql.snapshot_at, (seq,))
        return SnapshotRow(*rows[0]) if rows else None

    def snapshot_seqs(self) -> list[int]:
        return [int(r[0]) for r in self._query(self._sql.snapshot_seqs)]

    def drop_snapshots(self) -> int:
        with self.write() as txn:
            return txn.drop_snapshots()

    def seq_bounds(self) -> tuple[int, int | None, int | None]:
        count, low, high = self._query(self._sql.seq_bounds)[0]
        return int(count), low, high

    def secret(self, ref: str) -> SecretRow | None:
        rows = self._query(self._sql.secret, (ref,))
        return SecretRow(*rows[0]) if rows else None

    def secrets(self) -> Iterator[SecretRow]:
        return iter([SecretRow(*r) for r in self._query(self._sql.secrets)])

    def get_meta(self, key: str) -> str | None:
        rows = self._query(self._sql.get_meta, (key,), "reading meta")
        return None if not rows else str(rows[0][0])

    def meta_items(self) -> dict[str, str]:
        """Every meta value (for copying a ledger to another backend)."""
        return {str(k): str(v) for k, v in self._query(self._sql.meta_items, (), "reading meta")}

    def checkpoint(self) -> None:
        """After a shred: PostgreSQL keeps the old row version holding a sealed value
        until VACUUM removes it, so vacuum the secrets table now (outside a
        transaction, as VACUUM requires). The server's WAL files still hold it until
        they are recycled, as SQLite's backups would."""
        try:
            conn = self._pool.getconn()
        except self._errors as err:
            raise _translate(err, self.location, "vacuuming the secrets table") from err
        try:
            conn.execute(f'VACUUM "{self.schema}".ledger_secrets')  # pooled: autocommit
        except self._errors as err:
            raise _translate(err, self.location, "vacuuming the secrets table") from err
        finally:
            self._pool.putconn(conn)

    def backup_to(self, target: str | os.PathLike[str]) -> None:
        raise StoreError(f"{self.location}: a PostgreSQL ledger has no file to copy; back it up "
                         "with copy_ledger (moltis-ledger backup does)")

    def replace_with(self, source: Backend) -> None:
        self.turn()  # raises: no turn, no replacing in place

    def turn(self) -> contextlib.AbstractContextManager[None]:
        raise StoreError(f"{self.location}: a PostgreSQL ledger cannot be replaced in place; "
                         "import a bundle into an empty ledger instead")

    def size_bytes(self) -> int | None:
        rows = self._query(self._sql.size, (self.schema, list(_TABLES)))
        return int(rows[0][0]) if rows else None

    # -- notifications ---------------------------------------------------------------

    async def listen(self) -> psycopg.AsyncConnection[Any]:
        """A new autocommit connection LISTENing on this ledger's channel; every append
        notifies it with the new head seq. The caller closes it."""
        try:
            conn = await self._psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, **self._connect_kwargs)
        except self._errors as err:
            raise _translate(err, self.location, "connecting to listen") from err
        try:
            await conn.execute(f'LISTEN "{self.channel}"')
        except self._errors as err:
            await conn.close()
            raise _translate(err, self.location, "listening") from err
        return conn  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._writer_lock:
            if self._writer is not None:
                self._pool.putconn(self._writer[0])
                self._writer = None
        self._pool.close()
