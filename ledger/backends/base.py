"""The backend seam: what every storage backend (memory, SQLite, PostgreSQL) offers.

Backends store bytes. They receive finished `Record`s (hashes already computed) and
opaque snapshot and sealed-secret blobs; they never import event classes, projections
or stores. All SQL lives in the backend modules; nothing above them changes per backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Final, NamedTuple, Protocol

import msgspec

from ledger.core.chain import GENESIS
from ledger.core.events import KIND_CHANGE, SEALED_MARK, Record, Row, decode_change_payload
from ledger.errors import FormatVersionError, StoreError, VerificationError

__all__ = ["CREATED_FORMAT", "FORMAT_SEALED_LISTS", "FORMAT_VERSION", "HEAD_MAC",
           "HEAD_SIGNATURE", "Backend", "Changes", "FormatScan", "Head", "SecretRow",
           "SnapshotRow", "WriteTxn", "changes_of", "format_needed", "payload_format",
           "raise_format", "refuse_newer_format"]

# Version of the stored format (tables, payload encoding, chain layout) this release
# understands. A database written with a higher number is refused, never written to.
FORMAT_VERSION: Final = 2
# What a new ledger says: 1, so a release that understands only 1 can still open a
# ledger that never needed more.
CREATED_FORMAT: Final = 1
# A change payload holding secrets inside list values (`Change.sealed`): a release that
# understands only format 1 would hand the gateway `{"$secret": …}` tables in those
# lists, so the first such event raises the ledger's version to 2 (in its transaction).
FORMAT_SEALED_LISTS: Final = 2
TABLE_PREFIX: Final = "ledger_"
# The ledger_meta keys of the signed checkpoint and of the MAC'd head
# (ledger.engine.integrity_keys writes them).
HEAD_SIGNATURE: Final = "head_signature"
HEAD_MAC: Final = "head_mac"


def refuse_newer_format(location: str, version: int | None) -> None:
    """The one format-version rule of every backend: a ledger written by a newer version
    is refused before anything is written to it."""
    if version is not None and version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{location}: the ledger was written by a newer version (format {version}; this "
            f"version understands up to {FORMAT_VERSION}). Upgrade moltis-config-ledger; "
            "nothing was written."
        )


def payload_format(kind: str, payload: bytes, seq: int | None = None) -> int:
    """The lowest format version a ledger holding this event must say it is."""
    # the byte test is the fast path (a payload without it holds no sealed list); the
    # decode tells a `sealed` key inside a list's table from the change field
    if kind == KIND_CHANGE and SEALED_MARK in payload and any(
            c.sealed for c in decode_change_payload(payload, seq).changes):
        return FORMAT_SEALED_LISTS
    return CREATED_FORMAT


class FormatScan:
    """The one scan for the first event that needs format 2 (secrets inside a list),
    fed the events in order (`see`): by every append (`format_needed`, the records of
    one write), `log_format`, `verify` (as the chain is read) and `rebuild-snapshots`
    (as it replays). It lives here, below the engine, so the write path and the read
    path share it.

    A payload that does not decode is a LedgerError (VerificationError naming its seq),
    the only error it catches: the scan keeps the first one in `damaged` and stops, and
    its caller reports it (`check` raises it; `verify` fails on it in its replay), so
    a malformed row is never taken for one that needs nothing. Anything else (a read
    error of the backend) is not the scan's to catch."""

    __slots__ = ("damaged", "sealed_seq")

    def __init__(self) -> None:
        self.sealed_seq: int | None = None
        self.damaged: VerificationError | None = None

    @property
    def done(self) -> bool:
        """Nothing later can change the answer."""
        return self.sealed_seq is not None or self.damaged is not None

    @property
    def needed(self) -> int:
        """The format the events seen so far need."""
        return CREATED_FORMAT if self.sealed_seq is None else FORMAT_SEALED_LISTS

    def see(self, seq: int, kind: str, payload: bytes) -> None:
        if self.done:
            return
        try:
            if payload_format(kind, payload, seq) > CREATED_FORMAT:
                self.sealed_seq = seq
        except VerificationError as err:
            self.damaged = err

    def check(self) -> None:
        """Raise the error of the first event that did not decode, if one did not."""
        if self.damaged is not None:
            raise self.damaged


def format_needed(records: Iterable[Record]) -> int:
    """The lowest format version a ledger holding `records` must say it is (`FormatScan`;
    VerificationError for a record that does not decode)."""
    # every append pays for this: a payload without the mark holds no sealed list and
    # is never decoded by the scan (`payload_format`), so such records need nothing
    if not any(SEALED_MARK in r.payload for r in records):
        return CREATED_FORMAT
    scan = FormatScan()
    for r in records:
        scan.see(r.seq, r.kind, r.payload)
        if scan.done:
            break
    scan.check()
    return scan.needed


def raise_format(txn: WriteTxn, needed: int, location: str) -> None:
    """Raise the ledger's `format_version` to `needed` in `txn` (never lower it): the
    backends call it from `append` when the records need more than a new ledger says."""
    stored = txn.get_meta("format_version")
    try:
        current = CREATED_FORMAT if stored is None else int(stored)
    except ValueError:
        raise StoreError(f"{location}: unreadable format version {stored!r}; run "
                         "`moltis-ledger verify`; nothing was written") from None
    if current < needed:
        txn.set_meta("format_version", str(needed))


# a Struct, not a dataclass: `get` starts without dataclasses and inspect (issue 16)
class Head(msgspec.Struct, frozen=True, gc=False):
    seq: int
    hash: bytes
    ts: int


EMPTY_HEAD: Final = Head(0, GENESIS, 0)


def rows_of(records: Iterable[Record]) -> Iterator[Row]:
    """`read_rows` for backends without a leaner query of their own."""
    return ((r.seq, r.kind, r.payload, r.hash, r.ts) for r in records)


Changes = tuple[Head | None, Iterator[tuple[int, bytes]]]


def changes_of(backend: Backend, after: int = 0, until: int | None = None) -> Changes:
    """`read_changes` for backends without a leaner query of their own."""
    last = next(backend.read(after, until, descending=True, limit=1), None)
    if last is None:
        return None, iter(())
    return Head(last.seq, last.hash, last.ts), (
        (seq, payload) for seq, kind, payload, _hash, _ts in backend.read_rows(after, last.seq)
        if kind == KIND_CHANGE)


class SnapshotRow(NamedTuple):
    seq: int
    hash: bytes
    state: bytes


class SecretRow(NamedTuple):
    ref: str
    sealed: bytes | None  # None once shredded
    created_seq: int
    shredded_seq: int | None


class WriteTxn(Protocol):
    """One serialized write transaction. Everything done in it commits together."""

    def head(self) -> Head: ...

    def append(self, records: Sequence[Record]) -> None:
        """Insert `records` after the head; raises the ledger's format version in this
        transaction when they need more than it says (`format_needed`, `raise_format`)."""
        ...

    def put_snapshot(self, seq: int, hash: bytes, state: bytes) -> None: ...

    def put_secret(self, ref: str, sealed: bytes, created_seq: int) -> None: ...

    def shred_secret(self, ref: str, seq: int) -> bool:
        """Destroy a secret's value; False if there was no such live secret."""
        ...

    def reseal_secret(self, ref: str, sealed: bytes) -> bool:
        """Replace a live secret's sealed value (key rotation); False if there was no
        such live secret (a shredded one stays shredded)."""
        ...

    def drop_snapshots(self) -> int:
        """Delete every snapshot (rebuild-snapshots writes the new ones in the same
        transaction)."""
        ...

    def set_meta(self, key: str, value: str) -> None: ...

    def delete_meta(self, key: str) -> None:
        """Remove a meta row (none there: nothing happens)."""
        ...

    def get_meta(self, key: str) -> str | None: ...


class Backend(Protocol):
    """A total-order event log with snapshots, sealed secrets and a few meta values."""

    name: str
    location: str
    read_only: bool
    # What every refused write says when read_only (set by whoever opened it read-only
    # for a reason, e.g. the fallback after a failed writable open); "" for the default.
    read_only_reason: str

    def write(self, *, wait: bool = True, while_waiting: Callable[[], object] | None = None
              ) -> AbstractContextManager[WriteTxn]:
        """Begin the one writer transaction. Appends serialize on it (SQLite: BEGIN
        IMMEDIATE; PostgreSQL: an advisory append lock), which keeps seq order
        equal to commit order. With `wait=False` a held lock raises StoreBusyError at
        once instead of waiting for the busy timeout. `while_waiting()`, where the
        backend can run it (SQLite's queue of writer processes), is called now and then
        while this writer waits for other processes' writers; it must not raise."""
        ...

    def head(self) -> Head: ...

    def changed(self) -> bool:
        """Cheap check: may another connection have committed since the last call?"""
        ...

    def read(self, after: int = 0, until: int | None = None, *, descending: bool = False,
             limit: int | None = None) -> Iterator[Record]:
        """Records with after < seq <= until, in seq order (or reversed)."""
        ...

    def read_rows(self, after: int = 0, until: int | None = None) -> Iterator[Row]:
        """(seq, kind, payload, hash, ts) in seq order: what a replay needs, nothing more."""
        ...

    def read_changes(self, after: int = 0, until: int | None = None) -> Changes:
        """The head of the last event with after < seq <= until (None: there is none),
        and (seq, payload) of the change events up to it, in seq order: all that a full
        replay needs (`projections.config_view.replay_changes`; figure 5a)."""
        ...

    def record(self, seq: int) -> Record | None: ...

    def ts_of(self, seq: int) -> int | None: ...

    def snapshot_at(self, seq: int) -> SnapshotRow | None:
        """The latest snapshot with snapshot.seq <= seq."""
        ...

    def snapshot_seqs(self) -> list[int]: ...

    def drop_snapshots(self) -> int: ...

    def secret(self, ref: str) -> SecretRow | None: ...

    def secrets(self) -> Iterator[SecretRow]: ...

    def get_meta(self, key: str) -> str | None: ...

    def meta_items(self) -> dict[str, str]:
        """Every meta value (copies, restores and verify read them all)."""
        ...

    def seq_bounds(self) -> tuple[int, int | None, int | None]:
        """(count, min seq, max seq) of the stored event rows, whatever their seq: verify
        checks the rows are exactly 1..N (a stray or negative seq is invisible to reads)."""
        ...

    def checkpoint(self) -> None:
        """Make destroyed values leave the disk now (after a shred): SQLite truncates
        its WAL, PostgreSQL vacuums the secrets table. Raises StoreError if it cannot;
        the caller reports that as a warning (what was committed stays committed)."""
        ...

    def size_bytes(self) -> int | None: ...

    def backup_to(self, target: str | os.PathLike[str]) -> None:
        """A raw copy of the whole storage at `target`, a new private file (evidence of
        what was there, foreign objects included). StoreError where there is no such
        thing (PostgreSQL, memory): copy the ledger with copy_ledger instead."""
        ...

    def replace_with(self, source: Backend) -> None:
        """Replace the whole content by `source`'s (a fresh, verified ledger of the same
        kind), atomically. StoreError where unsupported."""
        ...

    def turn(self) -> AbstractContextManager[None]:
        """The write turn held without a transaction: no writer of any process commits
        until the block ends (a restore's check, keepsake and swap, `replace_with`).
        StoreError where a ledger cannot be replaced in place."""
        ...

    def close(self) -> None: ...
