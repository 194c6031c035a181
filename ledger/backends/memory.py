"""The in-memory reference backend: the contract in its simplest form, for tests and
for embedding a throwaway ledger. Nothing survives the process."""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from ledger.backends.base import (
    CREATED_FORMAT,
    EMPTY_HEAD,
    Backend,
    Changes,
    Head,
    SecretRow,
    SnapshotRow,
    changes_of,
    format_needed,
    raise_format,
    rows_of,
)
from ledger.core.events import Record, Row
from ledger.errors import StoreBusyError, StoreError

__all__ = ["MemoryBackend"]


class _MemoryTxn:
    def __init__(self, backend: MemoryBackend) -> None:
        self._b = backend
        self.records: list[Record] = []
        self.snapshots: list[SnapshotRow] = []
        self.secrets: dict[str, SecretRow] = {}
        self.meta: dict[str, str | None] = {}  # None: deleted
        self.drop = False

    def head(self) -> Head:
        if self.records:
            r = self.records[-1]
            return Head(r.seq, r.hash, r.ts)
        return self._b.head()

    def append(self, records: Sequence[Record]) -> None:
        if (need := format_needed(records)) > CREATED_FORMAT:
            raise_format(self, need, self._b.location)
        expected = self.head().seq + 1
        for r in records:
            if r.seq != expected:
                raise StoreError(f"append out of order: seq {r.seq}, expected {expected}")
            expected += 1
        self.records.extend(records)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """What the block wrote is undone if it raises (one event of a group commit)."""
        records, snapshots = len(self.records), len(self.snapshots)
        secrets, meta, drop = dict(self.secrets), dict(self.meta), self.drop
        try:
            yield
        except BaseException:
            del self.records[records:], self.snapshots[snapshots:]
            self.secrets, self.meta, self.drop = secrets, meta, drop
            raise

    def drop_snapshots(self) -> int:
        self.drop, self.snapshots = True, []
        return len(self._b._snapshots)

    def put_snapshot(self, seq: int, hash: bytes, state: bytes) -> None:
        self.snapshots.append(SnapshotRow(seq, hash, state))

    def put_secret(self, ref: str, sealed: bytes, created_seq: int) -> None:
        self.secrets[ref] = SecretRow(ref, sealed, created_seq, None)

    def shred_secret(self, ref: str, seq: int) -> bool:
        row = self.secrets.get(ref) or self._b._secrets.get(ref)
        if row is None or row.sealed is None:
            return False
        self.secrets[ref] = SecretRow(ref, None, row.created_seq, seq)
        return True

    def reseal_secret(self, ref: str, sealed: bytes) -> bool:
        row = self.secrets.get(ref) or self._b._secrets.get(ref)
        if row is None or row.sealed is None:
            return False
        self.secrets[ref] = SecretRow(ref, sealed, row.created_seq, None)
        return True

    def set_meta(self, key: str, value: str) -> None:
        self.meta[key] = value

    def delete_meta(self, key: str) -> None:
        self.meta[key] = None

    def get_meta(self, key: str) -> str | None:
        return self.meta[key] if key in self.meta else self._b._meta.get(key)


class MemoryBackend:
    """Keeps everything in Python lists; writers serialize on a lock."""

    name = "memory"
    read_only = False
    read_only_reason = ""

    def __init__(self) -> None:
        self.location = "memory:"
        self._group_token = object()
        self._lock = threading.RLock()
        self._records: list[Record] = []
        self._snapshots: dict[int, SnapshotRow] = {}
        self._snapshot_seqs: list[int] = []
        self._secrets: dict[str, SecretRow] = {}
        # what a new SQLite or PostgreSQL ledger says (raised by `append`, as theirs)
        self._meta: dict[str, str] = {"format_version": str(CREATED_FORMAT)}
        self._version = 0
        self._seen_version = 0

    def group_key(self) -> tuple[object, ...]:
        """Ledgers on this very backend commit in groups (ledger.engine.group_commit)."""
        return ("memory", self._group_token)

    @contextmanager
    def write(self, *, wait: bool = True, while_waiting: Callable[[], object] | None = None
              ) -> Iterator[_MemoryTxn]:
        # no other process writes here: `while_waiting` has nothing to catch up on
        if not self._lock.acquire(blocking=wait):
            raise StoreBusyError("the in-memory ledger is locked by another writer")
        try:
            txn = _MemoryTxn(self)
            yield txn
            # commit: all or nothing
            self._records.extend(txn.records)
            if txn.drop:
                self._snapshots.clear()
                self._snapshot_seqs.clear()
            for snap in txn.snapshots:
                if snap.seq not in self._snapshots:
                    bisect.insort(self._snapshot_seqs, snap.seq)
                self._snapshots[snap.seq] = snap
            self._secrets.update(txn.secrets)
            for key, value in txn.meta.items():
                if value is None:
                    self._meta.pop(key, None)
                else:
                    self._meta[key] = value
            if txn.records or txn.secrets:
                self._version += 1
        finally:
            self._lock.release()

    def head(self) -> Head:
        with self._lock:
            if not self._records:
                return EMPTY_HEAD
            r = self._records[-1]
            return Head(r.seq, r.hash, r.ts)

    def changed(self) -> bool:
        v = self._version
        if v != self._seen_version:
            self._seen_version = v
            return True
        return False

    def read(self, after: int = 0, until: int | None = None, *, descending: bool = False,
             limit: int | None = None) -> Iterator[Record]:
        with self._lock:
            end = len(self._records) if until is None else min(until, len(self._records))
            rows = self._records[max(after, 0) : max(end, 0)]
        if descending:
            rows = rows[::-1]
        if limit is not None:
            rows = rows[:limit]
        return iter(rows)

    def read_rows(self, after: int = 0, until: int | None = None) -> Iterator[Row]:
        return rows_of(self.read(after, until))

    def read_changes(self, after: int = 0, until: int | None = None) -> Changes:
        return changes_of(self, after, until)

    def record(self, seq: int) -> Record | None:
        with self._lock:
            return self._records[seq - 1] if 1 <= seq <= len(self._records) else None

    def ts_of(self, seq: int) -> int | None:
        rec = self.record(seq)
        return rec.ts if rec else None

    def snapshot_at(self, seq: int) -> SnapshotRow | None:
        with self._lock:
            i = bisect.bisect_right(self._snapshot_seqs, seq)
            return self._snapshots[self._snapshot_seqs[i - 1]] if i else None

    def snapshot_seqs(self) -> list[int]:
        with self._lock:
            return list(self._snapshot_seqs)

    def drop_snapshots(self) -> int:
        with self._lock:
            n = len(self._snapshots)
            self._snapshots.clear()
            self._snapshot_seqs.clear()
            return n

    def secret(self, ref: str) -> SecretRow | None:
        return self._secrets.get(ref)

    def secrets(self) -> Iterator[SecretRow]:
        return iter(list(self._secrets.values()))

    def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def backup_to(self, target: str | os.PathLike[str]) -> None:
        raise StoreError(f"{self.location}: a in-memory ledger has no file to copy; back it up "
                         "with copy_ledger (moltis-ledger backup does)")

    def replace_with(self, source: Backend) -> None:
        self.turn()  # raises: no turn, no replacing in place

    def turn(self) -> AbstractContextManager[None]:
        raise StoreError(f"{self.location}: a in-memory ledger cannot be replaced in place; "
                         "import a bundle into an empty ledger instead")

    def size_bytes(self) -> int | None:
        return None

    def seq_bounds(self) -> tuple[int, int | None, int | None]:
        with self._lock:
            seqs = [r.seq for r in self._records]
        return len(seqs), min(seqs, default=None), max(seqs, default=None)

    def meta_items(self) -> dict[str, str]:
        return dict(self._meta)

    def checkpoint(self) -> None:
        """Nothing to fold: nothing is on disk."""

    def close(self) -> None:
        pass

    # Tests use these to simulate tampering with stored history.
    def _tamper_replace(self, seq: int, record: Record) -> None:
        self._records[seq - 1] = record

    def _tamper_delete(self, seq: int) -> None:
        del self._records[seq - 1]
