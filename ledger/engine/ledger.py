"""The ledger engine: one backend, the config projection, the head cache and appends.

This is the synchronous core under the async stores and the CLI. It keeps the head
state cached and checks the backend's cheap change counter before every read, so an
unchanged ledger answers from memory and another process's append costs only the
replay of its tail. Appends run in the backend's one writer transaction: re-read the
head, rebase onto it, build the changes, link the hash, insert, and write a snapshot
every `snapshot_every` events, all in one commit. Concurrent appends of this process
share that transaction (`ledger.engine.group_commit`): each is built on the state the
previous one left, in its own savepoint.

This module is long because the head cache, the typed views and the write path share
one lock and one cached state, and their invariant (the cached state is the head this
connection last committed or read) is easier to keep in one module than across two.
What decides whether a state read back may be served (the head mark and head MAC on
the first load, MAC'd snapshots, the chain proof of every replayed event, catching up
on other writers) is `ledger.engine.read_proof`, which the Ledger owns and calls under
its lock; the append's helpers (its request, the sealer, the text rule) are
`ledger.engine.write_path`.

Integrity steps sit on the write path, in the same transaction: after the insert the
head must be the new event (`_check_stored`: nothing swallowed the row) and is vouched
for (`_sign_head`: a head MAC on every transaction, an Ed25519 signature at checkpoints,
never over a parent nobody vouched for; ledger.engine.head_vouch); snapshots are
sealed with their MAC (`_put_snapshot`) and checked when read
(`ReadProof.trusted_snapshot`); `verify` lives in `ledger.engine.audit`.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ledger._log import get_logger
from ledger.backends.base import (
    CREATED_FORMAT,
    FORMAT_SEALED_LISTS,
    HEAD_MAC,
    HEAD_SIGNATURE,
    Backend,
    Head,
    WriteTxn,
    raise_format,
)
from ledger.core.chain import GENESIS, VerifyReport, link, verify_records
from ledger.core.document import apply_changes, copy_value
from ledger.core.events import (
    KIND_CHANGE,
    KIND_SHRED,
    Change,
    ChangePayload,
    DocName,
    Event,
    Record,
    Row,
    ShredPayload,
    decode_event,
    encode_payload,
    now_us,
)
from ledger.core.keypaths import KeyPath, format_doc_path, format_path
from ledger.core.secret_refs import SecretRef
from ledger.engine.format_check import FormatScan, lists_hold_secrets
from ledger.engine.head_vouch import (
    ADOPT_HINT,
    HeadVoucher,
    drop_foreign_vouch,
    unvouched,
)
from ledger.engine.integrity_keys import HISTORY_ID, HeadMac, IntegrityKeys
from ledger.engine.read_proof import CATCH_UP_LIMIT, RESTORE_FIX, ReadProof
from ledger.engine.vault import KeySource, Vault
from ledger.engine.write_path import (
    Append,
    Build,
    TxnSealer,
    WriteDeps,
    load_write_deps,
    refuse_nul_changes,
)
from ledger.errors import (
    ConfigValidationError,
    ConflictError,
    InputError,
    LedgerError,
    SecretKeyError,
    StoreError,
    VerificationError,
)
from ledger.files.safe_io import MAX_FILE_BYTES
from projections.config_view import (
    EMPTY_STATE,
    ConfigState,
    fold,
    replay_changes,
    replay_rows,
)
from projections.snapshots import (
    SNAPSHOT_EVERY,
    encode_state,
    open_snapshot,
    seal_snapshot,
    should_snapshot,
)

if TYPE_CHECKING:
    # only a writable ledger commits: a read (`moltis-ledger get`) never loads it
    from ledger.engine.group_commit import Committer, Request

    # The typed layer (the schema, its decoders) is imported by the writes and typed
    # reads that need it, so reading the raw document (`moltis-ledger get`) starts fast.
    from ledger.schema import MoltisConfig
    from ledger.typed.changes import Sealer
    from ledger.typed.convert import RawChange
    from ledger.typed.head_cache import Edit, TypedCodec, TypedView

__all__ = ["Commit", "Ledger"]

_log = get_logger("ledger.engine.ledger")
SOURCES: Final = frozenset(
    {"api", "cli", "import", "rollback", "restore", "migrate", "web", "test", "bench"}
)
_GOOD_SOURCES: set[str] = set(SOURCES)
_CATCH_UP_LIMIT: Final = CATCH_UP_LIMIT  # the name tests read (the reader's, ReadProof's)


# a Struct (as `Event` is), not a dataclass: `get` starts without dataclasses and
# inspect (issue 16)
class Commit(msgspec.Struct, frozen=True):
    """The outcome of a write: the head seq after it, and whether an event was appended."""

    seq: int
    appended: bool
    hash: bytes
    changes: tuple[Change, ...] = ()
    # set when the event committed but a follow-up step did not (say what remains)
    warning: str | None = None

    @property
    def paths(self) -> list[str]:
        return [format_path(c.path) for c in self.changes]


class Ledger:
    """A configuration ledger over one backend (memory, SQLite or PostgreSQL)."""

    def __init__(self, backend: Backend, *, keys: KeySource | None = None,
                 snapshot_every: int = SNAPSHOT_EVERY) -> None:
        self.backend = backend
        self.vault = Vault(backend, keys or KeySource())
        self.snapshot_every = snapshot_every
        self._lock = threading.RLock()
        self._state: ConfigState | None = None
        self._codec: TypedCodec | None = None
        self._view: TypedView | None = None
        self.voucher = HeadVoucher()  # the head this ledger vouched for; checkpoint policy
        # what decides whether a state read back may be served (ledger.engine.read_proof)
        self.proof = ReadProof(backend, self.vault, self._forget_vouched)
        # the stored format version was checked against the head state (the first write
        # of this ledger object raises it if an older release left it too low)
        self._format_checked = False
        self._edit_ready = False  # update_typed's section decoders are built
        # called with the new head state after every commit of this process (e.g. the
        # mirror of the head the gateway falls back to); a failing hook is logged, and
        # never undoes or fails the commit, which is already durable
        self.after_commit: list[Callable[[ConfigState], None]] = []
        # a copy being made ready before it replaces a live ledger (restore, import:
        # ledger.ops.transfer.stage_copy) raises no head mark: the mark would name a
        # head the live ledger does not have yet. The head it would have raised it to
        # is kept here instead, for the live ledger to raise once the copy is in place.
        self.hold_marks = False
        self.held_mark: tuple[int, bytes] | None = None
        # Writers of this process on the same database (SQLite file, PostgreSQL schema)
        # commit in groups (group_commit); a backend without a group key commits each
        # append on its own.
        group_key = getattr(backend, "group_key", None)
        # the database's identity, when its appends go through group commit
        self.commit_group: Hashable | None = (
            group_key() if callable(group_key) and not backend.read_only else None)
        self._committer: Committer | None = None
        self._busy_text = (f"{backend.location}: the ledger is locked by another writer "
                           "of this process")
        if self.commit_group is not None:
            # lazy: only a writable ledger commits; a read (`get`) starts without it
            from ledger.engine.group_commit import committer_for

            self._committer = committer_for(self.commit_group)

    @property
    def codec(self) -> TypedCodec:
        """Encoders and decoders bound to this ledger's vault (built on first use)."""
        if self._codec is None:
            # lazy: schema and decoders load on first use (CLI start-up)
            from ledger.typed.head_cache import TypedCodec

            self._codec = TypedCodec(self.vault)
        return self._codec

    # -- the head ------------------------------------------------------------------

    def head_state(self) -> ConfigState:
        """The current state; costs one cheap check when nothing changed."""
        with self._lock:
            if self._state is None:
                self.backend.changed()  # start tracking other connections' commits
                head = self.backend.head()
                self.proof.check_mark(head)
                self._state = self.proof.load_head(head)
            elif self.backend.changed():
                self._state = self.proof.catch_up(self._state, self.backend.head(),
                                                  reading=True)
            return self._state

    @property
    def accept_older_head(self) -> bool:
        """An operator accepts an older ledger (sign-head --adopt, restore): the head
        mark is not checked, and a snapshot is not needed to read (ReadProof)."""
        return self.proof.accept_older_head

    @accept_older_head.setter
    def accept_older_head(self, accept: bool) -> None:
        self.proof.accept_older_head = accept

    def _forget_vouched(self) -> None:
        """Another history took this one's place: nothing this ledger vouched for holds."""
        self.voucher = HeadVoucher(self.voucher.every, self.voucher.secs)

    def mark_problem(self, head_seq: int,
                     unreadable: Callable[[str], None] | None = None) -> str | None:
        """Why `head` is older than the head mark beside the ledger key (a copy of the
        database put back), or None (ReadProof.mark_problem; `unreadable` hears of a
        mark that cannot be used, else it is logged as a warning)."""
        return self.proof.mark_problem(head_seq, unreadable)

    def mac_problem(self, head: Head) -> str | None:
        """Why a keyed open refuses `head` (ReadProof.mac_verdict), or None."""
        return self.proof.mac_problem(head)

    def mac_verdict(self, head: Head) -> tuple[str | None, int]:
        """(why the stored head MAC disowns `head`, or None; how many events at the head
        come after the MAC'd one) — ReadProof.mac_verdict."""
        return self.proof.mac_verdict(head)

    def head_problem(self) -> str | None:
        """Why the stored MAC or signature does not vouch for the current head, as
        `check` reports it (ReadProof.head_problem)."""
        return self.proof.head_problem()

    def state_at(self, seq: int) -> ConfigState:
        """The state as of event `seq` (0 = before the first event)."""
        return self.proof.state_at(seq, self.head_state())

    def _raise_mark(self, *, lower: bool = False) -> None:
        """After a commit that signed a checkpoint: raise the head mark to it
        (ReadProof.raise_mark_to)."""
        pending, self.voucher.to_mark = self.voucher.to_mark, None
        if self.hold_marks:
            self.held_mark = pending or self.held_mark
            return
        self.proof.raise_mark_to(pending, lower=lower)

    # -- typed views -----------------------------------------------------------------

    def _view_for(self, state: ConfigState) -> TypedView:
        view = self._view
        if view is None or view.key is not state:
            shared = self._committer.shared.get("view") if self._committer else None
            if shared is not None and shared.key is state:
                # another ledger on this database produced it (in a group commit): the
                # same sections, with secrets bound to this ledger's vault
                view = shared if shared.codec is self.codec else shared.rebind(self.codec)
            else:
                view = self._advanced(view, state) or self.codec.view_of_raw(
                    state.config, state, f"ledger seq {state.seq}")
            self._view = view
        return view

    @staticmethod
    def _advanced(view: TypedView | None, state: ConfigState) -> TypedView | None:
        """The view of `state` from the view of an earlier state of the same history
        (caught up on other writers' events): only the sections they changed are
        converted again."""
        if view is None or not isinstance(view.key, ConfigState):
            return None
        old = view.key
        if old.seq >= state.seq:
            return None
        return view.advanced(state, old.config, state.config)

    def typed(self, seq: int | None = None) -> MoltisConfig:
        """A fresh typed config (the caller may change it) at the head or at `seq`."""
        with self._lock:
            head = self.head_state()
            if seq is None or seq == head.seq:
                return self._view_for(head).fresh()
            # lazy: schema and decoders load on first use (CLI start-up)
            from ledger.typed.convert import to_typed

            state = self.state_at(seq)
            return to_typed(state.config, self.vault, where=f"ledger seq {state.seq}")

    def view(self) -> MoltisConfig:
        """The head's typed config, one instance shared by all readers until the head
        moves: the cheapest read, for callers that promise not to change it."""
        with self._lock:
            return self._view_for(self.head_state()).shared()

    # -- writes --------------------------------------------------------------------

    def _check_meta(self, actor: str | None, reason: str | None, source: str
                    ) -> tuple[str, str, str]:
        if not WriteDeps.loaded:
            load_write_deps()
        actor = WriteDeps.resolve_actor(actor)
        reason = WriteDeps.check_reason(reason)
        if source not in _GOOD_SOURCES:
            if not source or not source.replace("-", "").replace("_", "").isalnum():
                raise InputError(
                    f"source {source!r} must be a short word such as 'api' or 'cli'")
            if len(_GOOD_SOURCES) < 64:
                _GOOD_SOURCES.add(source)
        return actor, reason, source

    def _record(self, txn: WriteTxn, head: Head, kind: str, payload: bytes, actor: str,
                reason: str, source: str, *, sign: bool = True) -> Record:
        """Link and insert one event on `head`; vouched for at once unless the caller (a
        group commit) vouches for the group's last event itself (`_sign_head`)."""
        seq = head.seq + 1
        ts = max(now_us(), head.ts)  # event times never go backwards along the log
        h = link(head.hash, seq, ts, actor, reason, source, kind, payload)
        rec = Record(seq, ts, actor, reason, source, kind, payload, head.hash, h)
        txn.append([rec])
        self._check_stored(txn, rec)
        if sign:
            self._sign_head(txn, rec, rec)
        return rec

    def _check_stored(self, txn: WriteTxn, rec: Record) -> None:
        """After the insert: the head must now be this event (a foreign trigger or rule
        could have swallowed the row; the backends also check that exactly one row went
        in)."""
        after = txn.head()
        if after.seq != rec.seq or after.hash != rec.hash:
            raise StoreError(
                f"{self.backend.location}: event {rec.seq} was not stored (the head is "
                f"still event {after.seq}); nothing was written. Something in the database "
                "discards inserts (a foreign trigger or rule on ledger_events?): run verify, "
                "and restore from a backup")

    def _sign_head(self, txn: WriteTxn, first: Record, last: Record) -> str | None:
        """Vouch for `last` as the new head, in the same transaction (`first` is the first
        event this transaction appended; the events between are its own): one head MAC,
        and an Ed25519 signature at a checkpoint, if the stored MAC or signature vouches
        for `first`'s parent (ledger.engine.head_vouch). Else nothing is vouched for and
        the reason is returned (and logged as a warning): the write itself goes on, onto
        a tail appended without the key as a reader serves it, but never onto a history
        the stored head MAC disowns, which every reader refuses (raised: the
        transaction, caught up on it without a MAC read, rolls back). Under the key of
        this transaction: another process may have rotated it."""
        keys = self.vault.integrity_now(txn, (first.seq - 1, first.prev_hash),
                                        (last.seq, last.hash))
        if keys is None:
            return None
        shared = self._committer.shared if self._committer is not None else None
        problem = self.voucher.vouch(txn, keys, self.vault.ledger_id, first, last, shared)
        if problem is not None:
            parent = Head(first.seq - 1, first.prev_hash, 0)  # (the time is not judged)
            if (disowned := self.proof.mac_problem(parent)) is not None:
                raise self.proof.disowned(disowned, parent.seq)
            problem = (f"event {last.seq} is written unsigned: {problem}. Nothing written "
                       f"to this ledger is vouched for until an operator does: {ADOPT_HINT}")
            _log.warning(problem, location=self.backend.location, seq=last.seq)
        return problem

    def _put_snapshot(self, txn: WriteTxn, state: ConfigState) -> None:
        """A snapshot sealed with the MAC key; none without the ledger key (an unsealed
        snapshot would never be trusted anyway)."""
        keys = self.vault.integrity_now(txn)
        if keys is not None:
            txn.put_snapshot(state.seq, state.hash, seal_snapshot(
                keys.snapshot_mac, state.seq, state.hash, encode_state(state)))

    def append(self, build: Build, *, actor: str | None = None, reason: str | None = None,
               source: str = "api", expected_seq: int | None = None,
               rollback_to: int | None = None, wait: bool = True,
               on_fold: Callable[[ConfigState], None] | None = None,
               meta: dict[str, str] | None = None,
               prepare: Callable[[ConfigState], object] | None = None) -> Commit:
        """Append one change event built from the current head, or nothing.

        `build(state, sealer)` returns the changes; if it raises, or returns none, the
        ledger is unchanged. With `expected_seq`, a head that moved raises ConflictError.
        `meta` entries (which `build` may fill in) are written in the same transaction.
        `on_fold(new_state)` runs once the event is folded (before the commit is durable).
        `prepare(state)` may run, before `build`, on states the head passes through while
        this write waits for other processes' writers (e.g. to build what `build` will
        need of a state outside the lock); it must not change the ledger.

        Concurrent appends from this process are committed in groups (one transaction,
        one fsync; see `ledger.engine.group_commit`); each returns only after the commit
        that holds its event is durable, and a failure is raised only to its caller.
        """
        actor, reason, source = self._check_meta(actor, reason, source)  # loads WriteDeps
        req = WriteDeps.Request(self, Append(build, actor, reason, source, expected_seq,
                                             rollback_to, on_fold, meta, prepare))
        if self._committer is None:
            self._commit_group([req], wait)
            result: Commit = req.outcome()
            return result
        return self._committer.run(req, self._group_wait if wait else self._group_now,  # type: ignore[no-any-return]
                                   wait=wait, busy=self._busy_text)

    def _group_wait(self, batch: list[Request]) -> None:
        self._commit_group(batch, True)

    def _group_now(self, batch: list[Request]) -> None:
        self._commit_group(batch, False)

    def _commit_group(self, batch: list[Request], wait: bool) -> None:
        """One write transaction for every request of `batch` (this ledger leads it)."""
        started = time.perf_counter()
        shared = self._committer.shared if self._committer is not None else {}
        with self._lock:
            # No change poll here: the head read inside the write transaction is what
            # tells whether another writer appended (it must be read there anyway).
            state = self._state if self._state is not None else self.head_state()
            with self.backend.write(wait=wait,
                                    while_waiting=self._while_waiting(batch, wait)) as txn:
                if self._state is not None:
                    state = self._state  # caught up while waiting (WaitWork)
                head = txn.head()
                if head.seq != state.seq or head.hash != state.hash:
                    last = shared.get("state")
                    if last is not None and last.seq == head.seq and last.hash == head.hash:
                        state = last  # another ledger of this process led the last group
                    else:
                        state = self.proof.catch_up(state, head)
                    # not adopted yet: what the write read is trusted only once its
                    # commit succeeded (below)
                if not self._format_checked:
                    self._raise_stale_format(txn, state)
                savepoint = getattr(txn, "savepoint", None) if len(batch) > 1 else None
                for req in batch:
                    if savepoint is None:  # alone: a failure rolls the transaction back
                        state, head = self._append_one(txn, req, state, head)
                        continue
                    try:
                        with savepoint():
                            state, head = self._append_one(txn, req, state, head)
                    except BaseException as err:  # this caller's only (its thread re-raises
                        # it, KeyboardInterrupt or a cancellation included); the group goes on
                        req.result, req.error, req.record = None, err, None
                        self._check_group_alive(txn, err)
                self._check_group_alive(txn, None)
                stored = [req.record for req in batch if req.record is not None]
                unsigned = self._sign_head(txn, stored[0], stored[-1]) if stored else None
            # committed (and fsync'd): from here on every event of the group is durable
            self._format_checked = True
            self._state = state
            shared["state"] = state
            if self.voucher.to_mark is not None:
                self._raise_mark()
        if unsigned is not None:
            for req in batch:
                if req.error is None and req.result.appended:
                    req.result = msgspec.structs.replace(req.result, warning=unsigned)
        appended = [req for req in batch if req.error is None and req.result.appended]
        for ledger in dict.fromkeys(req.ledger for req in appended):
            if ledger is not self:
                ledger._adopt_state(state)
            ledger._run_hooks(state)  # each ledger's after-commit hooks, once per group
        if _log.enabled():
            took = round((time.perf_counter() - started) * 1000, 3)
            for req in batch:
                commit = req.result
                if req.error is None and commit.appended:
                    _log.info("appended", seq=commit.seq, actor=req.params.actor,
                              source=req.params.source, paths=commit.paths, group=len(batch),
                              duration_ms=took)

    def _while_waiting(self, batch: list[Request], wait: bool
                       ) -> Callable[[], None] | None:
        """What this write does while it waits for other processes' writers: catch up
        and prepare outside the lock (ledger.engine.write_wait)."""
        return WriteDeps.WaitWork(self, batch) if wait else None

    def _check_group_alive(self, txn: WriteTxn, err: BaseException | None) -> None:
        """After a member failed (and before signing): is the group's transaction still
        open? SQLite rolls back the WHOLE transaction on some errors (a trigger's
        RAISE(ROLLBACK); SQLITE_FULL, IOERR, BUSY, NOMEM may): then nothing of the group
        was written, every caller must be told so, and nothing more may run (it would
        commit in autocommit mode, or vouch for a head that does not exist). Raised out
        of the transaction, this fails every request of the group (Committer._lead)."""
        if getattr(txn, "active", True):
            return
        cause = f" (a {type(err).__name__} in one of its writes)" if err is not None else ""
        raise StoreError(f"{self.backend.location}: the write transaction of this group "
                         f"commit was rolled back{cause}; nothing of this write was stored: "
                         "retry it") from err

    def _raise_stale_format(self, txn: WriteTxn, state: ConfigState) -> None:
        """Raise the format version in `txn` if the head state holds a secret inside a
        list while the ledger says less (the real 8b561be seals list elements but never
        raises the version; its events then sit in a format-1 ledger that a release from
        before issue 14 would serve as reference tables). Once per ledger object: the
        head state is at hand, and each event this release appends is checked by the
        backend's `append` anyway; the whole log is `rebuild-snapshots`' to read."""
        stated = txn.get_meta("format_version")
        if stated == str(CREATED_FORMAT) and lists_hold_secrets((state.config, state.keys)):
            raise_format(txn, FORMAT_SEALED_LISTS, self.backend.location)

    def _append_one(self, txn: WriteTxn, req: Request, state: ConfigState, head: Head
                    ) -> tuple[ConfigState, Head]:
        """Build, check, link and insert one caller's event on `head` (inside the group's
        transaction); returns the state and head after it."""
        p: Append = req.params
        if p.expected_seq is not None and p.expected_seq != head.seq:
            raise ConflictError(p.expected_seq, head.seq)
        seq = head.seq + 1
        changes = list(p.build(state, TxnSealer(req.ledger.vault, txn, seq)))
        for key, value in (p.meta or {}).items():
            txn.set_meta(key, value)
        if not changes:
            req.result = Commit(head.seq, False, head.hash)
            return state, head
        refuse_nul_changes(changes)
        payload = encode_payload(ChangePayload(changes=changes, rollback_to=p.rollback_to))
        if len(payload) > MAX_FILE_BYTES:
            raise InputError(f"one change of {len(payload):,} bytes is too large (the "
                             f"limit is {MAX_FILE_BYTES:,}, as for a configuration "
                             "file); nothing was written")
        rec = self._record(txn, head, KIND_CHANGE, payload, p.actor, p.reason, p.source,
                           sign=False)  # the group signs its last event (_commit_group)
        req.record = rec
        # the state keeps its own tables and lists: the changes may hold the caller's
        # objects (or another state's), and the Commit hands them back out
        new_state = fold(state, rec, [
            msgspec.structs.replace(c, value=copy_value(c.value))
            if isinstance(c.value, (dict, list)) else c for c in changes])
        if should_snapshot(seq, self.snapshot_every):
            self._put_snapshot(txn, new_state)
        if p.on_fold is not None:
            p.on_fold(new_state)
        req.result = Commit(seq, True, rec.hash, tuple(changes))
        return new_state, Head(seq, rec.hash, rec.ts)

    def _adopt_state(self, state: ConfigState) -> None:
        """Another ledger of this process committed up to `state` for this one's caller:
        start from it (if nobody is using this ledger right now; else the change poll
        catches up on the next read anyway)."""
        if self._lock.acquire(blocking=False):
            try:
                if self._state is None or self._state.seq < state.seq:
                    self._state = state
            finally:
                self._lock.release()

    def _run_hooks(self, state: ConfigState) -> None:
        for hook in self.after_commit:
            try:
                hook(state)
            except Exception as err:  # a hook never fails the commit (see after_commit)
                _log.warning("an after-commit hook failed", seq=state.seq,
                             error=f"{type(err).__name__}: {err}")

    def update_typed(self, fn: Callable[[MoltisConfig], Any], **kw: Any) -> Commit:
        """Give `fn` a typed copy of the head; record only the paths it changed."""
        materialize = WriteDeps.materialize
        if materialize is None:
            # lazy: schema and decoders load on first use (CLI start-up)
            from ledger.typed.changes import materialize as loaded
            from ledger.typed.head_cache import StaleView  # lazy: as materialize

            WriteDeps.stale_view = StaleView
            materialize = WriteDeps.materialize = loaded
        if not self._edit_ready:
            # built here, before the write lock: decoders for every section take tens
            # of ms, which every writer queued behind this one would wait for
            self._edit_ready = bool(self.codec.section_decoders)
        result: dict[str, Any] = {}

        def build(state: ConfigState, sealer: Sealer) -> list[Change]:
            view, edit = self._edit_view(state, fn)
            changes = materialize(edit.changes, state.config, sealer, where="update")
            if not changes:
                return changes
            if edit.problem is None and not edit.reorder and not any(
                    c.secret is not None for c in changes):
                # only changed paths were recorded, so the edited view is exactly the
                # typed view of the new raw document (a map whose order may differ from
                # the raw document's takes the view from it below)
                result["edited"] = (view, edit)
            else:
                # names a bad path precisely
                try:
                    result["typed"] = self._validate(state, changes, sealer)
                except ConfigValidationError as err:  # a value fn set: say how to fix it
                    from ledger.typed.head_cache import EDIT_FIX  # loaded: `view` is one

                    raise ConfigValidationError(f"{err}{EDIT_FIX}", err.path) from None
                if edit.problem is not None:
                    raise ConfigValidationError(f"update: {edit.problem}",
                                                edit.problem.split(":", 1)[0])
            return changes

        return self.append(build, on_fold=lambda s: self._adopt(s, result),
                           prepare=self._view_for, **kw)

    def _edit_view(self, state: ConfigState, fn: Callable[[MoltisConfig], Any]
                   ) -> tuple[TypedView, Edit]:
        """`fn` run on a copy of the view of `state`. A view whose values something
        changed in place (StaleView: a caller's copy reached them through a C-level
        reader, review r7) is dropped and built again from the raw document, and `fn`
        runs once more on a copy of that; if `fn` itself changes the new view that way,
        the edit is refused with how to make it."""
        for attempt in (1, 2):
            view = self._view_for(state)
            try:
                return view, view.edit(fn, state.config)
            except WriteDeps.stale_view as stale:
                self._drop_view(view)
                if attempt == 2:
                    raise ConfigValidationError(
                        f"update: {stale}: fn changed the config in place through a value "
                        "it read with msgspec.structs.asdict/astuple (or another reader "
                        "that does not go through attributes); nothing was written. "
                        "Change the copy through its attributes (cfg.section.field = "
                        "value), or return a new config", str(stale)) from None
        raise AssertionError("unreachable")

    def _drop_view(self, view: TypedView) -> None:
        """Forget `view` (this ledger's, and the group's if it is the one shared)."""
        if self._view is view:
            self._view = None
        if self._committer is not None and self._committer.shared.get("view") is view:
            del self._committer.shared["view"]

    def save_typed(self, cfg: MoltisConfig, **kw: Any) -> Commit:
        """Make the head's typed view equal `cfg` (unknown raw keys are kept)."""
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.schema import MoltisConfig

        if not isinstance(cfg, MoltisConfig):
            raise InputError(f"save_raw expects a MoltisConfig, got {type(cfg).__name__}")
        # a private copy, since the caller may keep editing cfg
        encoded = self.codec.encoder.encode(cfg)
        return self.update_typed(lambda _old: self.codec.decoder.decode(encoded), **kw)

    def save_documents(self, config: dict[str, Any] | None = None,
                       keys: dict[str, Any] | None = None, *, where: str = "document",
                       **kw: Any) -> Commit:
        """Make whole documents equal these (None leaves that document as it is)."""
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.schema.provider_keys import is_key_secret_path

        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.typed.changes import materialize_document

        result: dict[str, TypedView] = {}

        def build(state: ConfigState, sealer: Sealer) -> list[Change]:
            changes: list[Change] = []
            if config is not None:
                changes += materialize_document(state.config, config, sealer, where)
            if keys is not None:
                changes += materialize_document(state.keys, keys, sealer, where, doc="keys",
                                                secret=is_key_secret_path)
            if any(c.doc == "config" for c in changes):
                result["typed"] = self._validate(state, changes, sealer)
            return changes

        return self.append(build, on_fold=lambda s: self._adopt(s, result), **kw)

    def edit(self, sets: Mapping[KeyPath, Any] | None = None, unsets: Iterable[KeyPath] = (), *,
             doc: DocName = "config", where: str = "edit", **kw: Any) -> Commit:
        """Set values at paths and unset paths, as `moltis-ledger set/unset` does; tables
        are expanded into leaves and secrets sealed. Validated like every write."""
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.typed.convert import RawChange

        raw_changes = [RawChange("unset", tuple(p)) for p in unsets]
        raw_changes += [RawChange("set", tuple(p), v) for p, v in (sets or {}).items()]
        return self.apply_raw(raw_changes, doc=doc, where=where, **kw)

    def apply_raw(self, raw_changes: Sequence[RawChange], *, doc: DocName = "config",
                  where: str = "edit", **kw: Any) -> Commit:
        """Append raw path changes (sets replace what is at the path)."""
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.schema.introspect import is_secret_path

        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.schema.provider_keys import is_key_secret_path

        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.typed.changes import materialize, replace_tables

        secret = is_key_secret_path if doc == "keys" else is_secret_path

        def changes_for(state: ConfigState, sealer: Sealer) -> list[Change]:
            document = state.document(doc)
            return materialize(replace_tables(raw_changes, document), document, sealer,
                               where=where, doc=doc, secret=secret)

        return self.apply(changes_for, **kw)

    def apply(self, changes_for: Callable[[ConfigState, Sealer], Sequence[Change]],
              *, where: str = "update", **kw: Any) -> Commit:
        """Append changes computed by the caller from the head state (validated; an
        invalid value is reported at its path in `where`)."""
        result: dict[str, TypedView] = {}

        def build(state: ConfigState, sealer: Sealer) -> Sequence[Change]:
            changes = changes_for(state, sealer)
            if any(c.doc == "config" for c in changes):
                result["typed"] = self._validate(state, changes, sealer, where)
            return changes

        return self.append(build, on_fold=lambda s: self._adopt(s, result), **kw)

    def _validate(self, state: ConfigState, changes: Sequence[Change], sealer: Sealer,
                  where: str = "update") -> TypedView:
        """The typed view of the state `changes` make (raises ConfigValidationError)."""
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.typed.convert import to_typed

        config_changes = [c for c in changes if c.doc == "config"]
        new_raw, _ = apply_changes(state.config, config_changes)
        # the secrets this write sealed open from memory (their rows are not committed)
        opener = sealer.opener() if isinstance(sealer, TxnSealer) else self.vault
        if self._view is not None:
            # the head's view patched: only the top-level sections the changes touched
            # are converted (`apply_changes` is copy-on-write); anything else, or an
            # invalid value, takes the whole conversion, which names the bad path
            view = self._view_for(state).advanced(None, state.config, new_raw, opener)
            if view is not None:
                return view
        return self.codec.view_of(to_typed(new_raw, opener, where=where), None)

    def _adopt(self, state: ConfigState, result: dict[str, Any]) -> None:
        """The typed view of `state`, the state an append of this ledger just folded,
        from what its build computed; shared with the group, whose next append (by any
        ledger of this process on this database) builds on it."""
        view = self._view
        if "edited" in result:
            base, edit = result["edited"]
            view = base.after(state, edit)
        elif "typed" in result:
            view = result["typed"].same_config(state)
        elif (view is not None and isinstance(view.key, ConfigState)
              and view.key.config is state.config):
            # the config document is the very same object (a keys-only event)
            view = view.same_config(state)
        else:
            return
        self._view = view
        if self._committer is not None:
            self._committer.shared["view"] = view

    # -- shredding -------------------------------------------------------------------

    def shred(self, refs: Sequence[SecretRef], *, paths: Sequence[str] = (),
              actor: str | None = None, reason: str | None = None, source: str = "cli",
              wait: bool = True) -> Commit:
        """Destroy the stored values of these secrets ("forget this key"). History keeps
        that they existed, who set them and when; a shred event records who destroyed
        them and why; reading a past point that held one shows it as destroyed. The
        chain is untouched, because values were never part of it."""
        actor, reason, source = self._check_meta(actor, reason, source)
        live = [r for r in dict.fromkeys(refs) if not self.vault.is_destroyed(r)]
        if not paths:  # name where the values were held, so history can show it
            wanted = {r.ref for r in live}
            paths = list(dict.fromkeys(  # stored: the form every release reads
                format_doc_path(c.doc, c.path, stored=True)
                for ev in self.events() for c in ev.changes
                if any(r.ref in wanted for r in c.refs())))
        if not live:
            current = self.head_state()
            return Commit(current.seq, False, current.hash)
        payload = encode_payload(ShredPayload(secrets=live, paths=list(paths)))
        with self._lock:
            with self.backend.write(wait=wait) as txn:
                head = txn.head()
                state = self._state or self.head_state()
                if head.seq != state.seq or head.hash != state.hash:
                    state = self.proof.catch_up(state, head)
                rec = self._record(txn, head, KIND_SHRED, payload, actor, reason, source)
                for ref in live:
                    txn.shred_secret(ref.ref, rec.seq)
                state = fold(state, rec)
                if should_snapshot(rec.seq, self.snapshot_every):
                    self._put_snapshot(txn, state)
            self._state = state  # committed: only now is the new state served
        self._raise_mark()
        self._run_hooks(state)
        _log.info("shredded", seq=rec.seq, actor=actor, secrets=len(live), paths=list(paths))
        # The shred is committed: from here on it is a success. Old WAL pages (SQLite) or
        # row versions (PostgreSQL) may still hold the sealed value until this step works.
        warning = None
        try:
            self.backend.checkpoint()
        except StoreError as err:
            warning = (f"the shred is committed (seq {rec.seq}), but {err}; the destroyed "
                       "value's old bytes may remain in the database's write-ahead log until "
                       "`moltis-ledger checkpoint` succeeds (or the next write folds it in)")
            _log.warning("checkpoint after a shred failed", location=self.backend.location,
                         seq=rec.seq, error=str(err))
        return Commit(rec.seq, True, rec.hash, warning=warning)

    def rotate_key(self, new_key: bytes, *, actor: str | None = None,
                   reason: str | None = None, source: str = "cli",
                   wait: bool = True) -> tuple[Commit, int]:
        """Re-seal every live secret under `new_key` and append a rotation event (a
        change event with no changes: who rotated, when and why; no key material), all
        in one transaction. Afterwards this ledger uses the new key; the caller makes it
        available to other processes (`ledger.ops.keys.rotate_key` does)."""
        actor, reason, source = self._check_meta(actor, reason or "rotate the ledger key",
                                                 source)
        payload = encode_payload(ChangePayload(changes=[]))
        with self._lock:
            try:
                with self.backend.write(wait=wait) as txn:
                    head = txn.head()
                    state = self._state or self.head_state()
                    if head.seq != state.seq or head.hash != state.hash:
                        state = self.proof.catch_up(state, head)
                    count = self.vault.rotate(txn, new_key)
                    rec = self._record(txn, head, KIND_CHANGE, payload, actor, reason, source,
                                       sign=False)
                    self._vouch_rotation(txn, rec, new_key)
                    state = fold(state, rec, [])
                self._state = state  # committed: only now is the new state served
            finally:
                self.vault.forget_key()  # unlock again, with whichever key is current
            self.vault.keys.use(new_key)
            self.finish_key_rotation()
        _log.info("ledger key rotated", seq=rec.seq, actor=actor, secrets=count)
        return Commit(rec.seq, True, rec.hash), count

    def _vouch_rotation(self, txn: WriteTxn, rec: Record, new_key: bytes) -> None:
        """The rotation event's head MAC and signature, under the new key, if the old
        key vouches for its parent, and every snapshot the old key's MAC proves, sealed
        again under the new key: once the rotation commits, no row proves the old key
        (ledger.engine.key_proof asks them all, so a row planted to say "rotated" can
        no longer turn that proof off). An unvouched head stays so: rotating is no way
        to adopt it. `finish_key_rotation` (now, or a resumed one) does the same again."""
        old = self.vault.integrity(txn)
        if old is None:
            return
        new = IntegrityKeys(new_key, self.vault.history)
        self._reseal_snapshots(txn, old, new)
        shared = self._committer.shared if self._committer is not None else None
        parent = (rec.seq - 1, rec.prev_hash)
        problem = (None if self.voucher.knows(parent, old, shared)
                   else unvouched(txn.get_meta, old, self.vault.ledger_id, parent))
        if problem is not None:
            _log.warning(f"the rotation event {rec.seq} is written unsigned: {problem}. "
                         f"{ADOPT_HINT[0].upper()}{ADOPT_HINT[1:]}",
                         location=self.backend.location, seq=rec.seq)
            return
        txn.set_meta(HEAD_MAC, new.mac_head(self.vault.ledger_id, rec.seq, rec.hash).encode())
        txn.set_meta(HEAD_SIGNATURE,
                     new.sign_head(rec.seq, rec.hash, self.vault.ledger_id).encode())

    def drop_foreign_vouch(self) -> bool:
        """In a copy being imported, before `fork_history`: drop the head MAC and
        signature rows this key did not write (head_vouch.drop_foreign_vouch; a restore
        refuses such a copy instead); whether any row of this key is left to judge the
        head by. False without the key (`fork_history` drops them then)."""
        keys = self.vault.integrity()
        if keys is None:
            return False
        with self._lock, self.backend.write() as txn:
            drop_foreign_vouch(txn, keys, self.vault.ledger_id)
            left = any(txn.get_meta(row) is not None for row in (HEAD_MAC, HEAD_SIGNATURE))
        self.reset_caches()
        return left

    def fork_history(self, reason: str, source: str) -> None:
        """Give this copy of the ledger a history of its own (HISTORY_ID), after a
        restore or an import made it from another: the history it replaced, or the one
        it was copied from, goes on existing under the same key, and its MAC'd snapshots
        must never anchor a read of this one (review r8, finding 1). In one transaction:
        the new id, the head MAC moved to the new keys if it checks under the old ones
        (naming the event it named: a vouched head stays vouched, a tail appended
        without the key stays such a tail), and an event saying so (a change event
        with no changes: who, when, why). The event moves the head, so every process
        still holding the ledger catches up on it and takes the new id
        (`Vault.integrity_now`, `mac_verdict`) rather than vouching from memory for a
        head of the old history (review r9). Snapshots sealed for the old id no longer
        check (readers replay instead): the callers rebuild them all under the new one
        (`rebuild_snapshots`). Without the key nothing is done: the MAC rows it would
        have to move (for a holder of the key) could not be."""
        actor, reason, source = self._check_meta(None, reason, source)
        payload = encode_payload(ChangePayload(changes=[]))
        with self._lock:
            # the read path's keys: a copy that came without its key check row (a bundle
            # without secrets) still has a head MAC and snapshots to move
            keys = self.vault.integrity()
            if keys is None:
                return
            with self.backend.write() as txn:
                # again: a copy imported before its key was at hand (a new installation)
                # had nothing dropped by `drop_foreign_vouch`
                drop_foreign_vouch(txn, keys, self.vault.ledger_id)
                history = os.urandom(16).hex()
                txn.set_meta(HISTORY_ID, history)
                head = txn.head()
                new = keys.for_history(history.encode())
                moved = self._moved_head_mac(txn.get_meta(HEAD_MAC), keys, new)
                # the MAC names this very head, its hash too (review r15: a bundle with
                # an event changed and the chain re-linked kept its MAC's seq, and was
                # signed as vouched for)
                vouched = moved is not None and head.seq > 0 and moved[0] == (head.seq, head.hash)
                rec = self._record(txn, head, KIND_CHANGE, payload, actor, reason, source,
                                   sign=False)
                if vouched:
                    shared = self._committer.shared if self._committer is not None else None
                    self.voucher.sign(txn, new, self.vault.ledger_id, rec.seq, rec.hash,
                                      rec.ts, shared)
                elif moved is not None:
                    txn.set_meta(HEAD_MAC, moved[1])
            self.reset_caches()
            if vouched:
                self._raise_mark()

    def _moved_head_mac(self, text: str | None, old: IntegrityKeys, new: IntegrityKeys
                        ) -> tuple[tuple[int, bytes], str] | None:
        """The stored head MAC made again under `new` for the event it names, if it
        checks under `old`: ((that seq, its hash), the new row)."""
        if text is None:
            return None
        try:
            mac = HeadMac.decode(text)
        except ValueError:
            return None
        if not old.mac_valid(self.vault.ledger_id, mac):
            return None
        return (mac.seq, mac.hash), new.mac_head(self.vault.ledger_id, mac.seq, mac.hash).encode()

    def _reseal_snapshots(self, txn: WriteTxn, old: IntegrityKeys, new: IntegrityKeys
                          ) -> None:
        """Every snapshot the old key's MAC proves, sealed under the new key (in the
        rotation's transaction, which holds the write lock: no other writer adds one
        meanwhile); one it does not prove is dropped (a read rebuilds from the log)."""
        resealed = []
        for seq in self.backend.snapshot_seqs():
            snap = self.backend.snapshot_at(seq)
            if snap is None:
                continue
            encoded = open_snapshot(old.snapshot_mac, seq, snap.hash, snap.state)
            if encoded is not None:
                resealed.append((seq, snap.hash, seal_snapshot(new.snapshot_mac, seq,
                                                               snap.hash, encoded)))
        txn.drop_snapshots()
        for seq, hash_, blob in resealed:
            txn.put_snapshot(seq, hash_, blob)

    def finish_key_rotation(self) -> None:
        """What follows a rotation's commit, under the key now in use; idempotent, so a
        rotation stopped after its commit is finished by running it again. The signing
        and snapshot MAC keys derive from the ledger key: the head the rotation MAC'd
        under the new key is signed with it (an unvouched head stays unsigned), the
        snapshots are sealed again (verify prints the new fingerprint to pin), and the
        head mirror's sealed copies follow."""
        with self._lock:
            try:
                self.sign_head()
            except VerificationError as err:
                _log.warning(str(err), location=self.backend.location)
            self.rebuild_snapshots()
            self._run_hooks(self._state or self.head_state())
        self.backend.checkpoint()  # old page images held values sealed under the old key

    def refs_with_fingerprint(self, fp: str) -> list[SecretRef]:
        """Every stored secret (in any version of either document) with this fingerprint."""
        found: dict[str, SecretRef] = {}
        for ev in self.events():
            for ch in ev.changes:
                for ref in ch.refs():  # a leaf's, or those sealed inside a list
                    if ref.fp == fp:
                        found[ref.ref] = ref
        return list(found.values())

    # -- history ---------------------------------------------------------------------

    def events(self, after: int = 0, until: int | None = None, *, descending: bool = False,
               limit: int | None = None) -> Iterator[Event]:
        """The events after `after` up to `until` (default: the head served), each served
        only once the head served is proven to descend from it (ReadProof.past: an event
        changed in place below the snapshot the head loads from is refused, naming it)."""
        for rec in itertools.islice(self.records(after, until, descending=descending), limit):
            yield decode_event(rec)

    def records(self, after: int = 0, until: int | None = None, *,
                descending: bool = False) -> Iterator[Record]:
        """`events` as the stored rows (a bundle's lines), proven the same way."""
        return self.proof.past.events(after, until, self.head_state(), descending=descending)

    def event(self, seq: int) -> Event | None:
        """The event at `seq`, proven as `events` proves them; None outside 1..head."""
        head = self.head_state()
        if not 1 <= seq <= head.seq:
            return None
        return decode_event(self.proof.past.record(seq, head))

    def seq_at_time(self, when: datetime | int) -> int:
        """The last seq whose time is at or before `when` (0 if none). Event times never
        decrease along the log, so this is a binary search over seq, without an index."""
        ts = when if isinstance(when, int) else int(when.timestamp() * 1_000_000)
        head = self.head_state()
        lo, hi = 0, head.seq
        while lo < hi:
            mid = (lo + hi + 1) // 2
            mid_ts = self.backend.ts_of(mid)
            if mid_ts is None:
                raise LedgerError(f"event {mid} is missing from the log; run verify")
            if mid_ts <= ts:
                lo = mid
            else:
                hi = mid - 1
        # the search read times as stored; the seq it settled on is decided by the times
        # of events lo and lo + 1, which are read again proven (times never decrease
        # along the log, so those two decide it): an edited time is refused, never
        # steers a time REF to a state the operator did not name (review round 6)
        near = {rec.seq: rec.ts for rec in self.proof.past.events(
            max(lo - 1, 0), min(lo + 1, head.seq), head)}
        if (lo and near[lo] > ts) or (lo < head.seq and near[lo + 1] <= ts):
            raise VerificationError(
                f"{self.backend.location}: the stored event times are out of order around "
                f"event {lo}: times were changed after they were written; run "
                "`moltis-ledger verify`", lo)
        return lo

    def verify(self, expect_head: bytes | None = None, expect_key: str | None = None,
               *, adopting: bool = False) -> VerifyReport:
        """The full check (ledger.engine.audit): the chain, the rows, a replay compared
        with every snapshot, the head and the secrets table, and the signed head (with
        `expect_key`, a pinned fingerprint, it must be signed by that key). `adopting`:
        the check before `sign_head(adopt=True)`, where an unvouched head or one older
        than the head mark is what the operator is about to accept (named in notes)."""
        from ledger.engine.audit import audit  # lazy: only verify needs the audit

        return audit(self, expect_head, expect_key, adopting=adopting)

    def verify_chain(self, expect_head: bytes | None = None) -> VerifyReport:
        """The hash chain alone (cheaper; what a bundle or a backup copy is checked with)."""
        return verify_records(self.backend.read(), expect_head)

    def replay(self, until: int | None = None) -> ConfigState:
        """A full replay of the log from genesis (snapshots ignored): what every
        snapshot and cached state must equal."""
        tail, changes = self.backend.read_changes(until=until)
        if tail is None:
            return EMPTY_STATE
        return replay_changes(None, tail.seq, tail.hash, tail.ts, changes)

    def rebuild_snapshots(self) -> int:
        """Write every snapshot again from the log; returns how many. The new ones are
        built first (a read), then replace the old ones in one write transaction that
        waits for the busy timeout like any write: a failure leaves the old ones."""
        encoded: list[tuple[int, bytes, bytes]] = []
        state = EMPTY_STATE
        batch: list[Row] = []
        scan = FormatScan()  # what the log needs: a ledger copied by an older tool may
        # say less (ledger.engine.format_check); and only a log whose chain is proven is
        # sealed into snapshots, which reads then trust over the events they cover
        walk, rows = self.proof.proven_rows(0, GENESIS, None)
        for row in rows:
            batch.append(row)
            scan.see(row[0], row[1], row[2])
            if should_snapshot(row[0], self.snapshot_every):
                state = replay_rows(state, batch, private=state is not EMPTY_STATE)
                batch = []
                encoded.append((state.seq, state.hash, encode_state(state)))
        report = walk.report()
        if not report.ok:
            raise VerificationError(
                f"{self.backend.location}: {report.problem}: no snapshot was rebuilt from "
                f"it (nothing was changed). {RESTORE_FIX}", report.first_bad_seq)
        # the events after the last snapshot are replayed too (the result is not kept):
        # the scan decodes only events that may need format 2, and stops at the first
        # that does, so this is what proves each of them decodes, as verify's replay does
        if batch:
            replay_rows(state, batch, private=state is not EMPTY_STATE)
        scan.check()
        keys = None if encoded else self.vault.integrity()
        with self.backend.write() as txn:
            # snapshots are sealed under the key check of this transaction, written with
            # them when the ledger has none (as every keyed write does): sealed
            # snapshots and no key check is what a deleted key check row looks like
            keys = keys or (self.vault.integrity_now(txn) if encoded
                            else self.vault.integrity(txn))
            if keys is None:
                raise SecretKeyError(
                    f"rebuild-snapshots needs the ledger key ({self.vault.keys.describe()}): "
                    "snapshots are sealed with a key derived from it; nothing was changed")
            if scan.needed > CREATED_FORMAT:
                raise_format(txn, scan.needed, self.backend.location)
            txn.drop_snapshots()
            for seq, hash_, state_bytes in encoded:
                txn.put_snapshot(seq, hash_, seal_snapshot(keys.snapshot_mac, seq, hash_,
                                                           state_bytes))
        return len(encoded)

    def reset_caches(self) -> None:
        """Forget cached state (after the storage was replaced underneath, by a restore)."""
        with self._lock:
            self._state = None
            self._view = None
            self.voucher = HeadVoucher(self.voucher.every, self.voucher.secs)
            self.vault.reload()
            self.proof.mark_checked = False
            self._format_checked = False

    def sign_head(self, *, adopt: bool = False, expect_hash: bytes | None = None,
                  accept_older: bool = False) -> bool:
        """A checkpoint now: MAC and sign the current head with this ledger key; False
        without the key (or on an empty ledger). Only a head that the stored MAC or
        signature vouches for, unless `adopt`: the operator vouches for this head (after
        `verify`: `moltis-ledger sign-head --adopt`; a restore or an import that checked
        every row). Raises VerificationError (nothing written) for an unvouched head, or
        when `expect_hash` (the head the caller checked) is no longer the head."""
        with self._lock, self.backend.write() as txn:
            head = txn.head()
            if expect_hash is not None and head.hash != expect_hash:
                raise VerificationError(
                    f"{self.backend.location}: the head moved (now event {head.seq}) since "
                    "it was checked; nothing was signed: check it again", head.seq)
            if adopt and head.seq:  # the operator vouches: a deleted key check is written again
                self.vault.restore_check(txn)
            keys = self.vault.integrity(txn)
            if keys is None or head.seq == 0:
                return False
            shared = self._committer.shared if self._committer is not None else None
            at = (head.seq, head.hash)
            if not adopt and not self.voucher.knows(at, keys, shared):
                problem = unvouched(txn.get_meta, keys, self.vault.ledger_id, at)
                if problem is not None:
                    raise VerificationError(
                        f"{self.backend.location}: not signing event {head.seq}: {problem}; "
                        f"nothing was written. {ADOPT_HINT[0].upper()}{ADOPT_HINT[1:]}",
                        head.seq)
            self.voucher.sign(txn, keys, self.vault.ledger_id, head.seq, head.hash, head.ts,
                              shared)
        # an adopted or restored head may be older than the mark: the operator accepts it
        self._raise_mark(lower=adopt or accept_older)
        if adopt or accept_older:
            self.proof.mark_checked = True
        return True

    def close(self) -> None:
        """Sign the head this ledger vouched for last, if no signature covers it yet (a
        checkpoint; skipped when another writer holds the lock or moved the head), then
        close the backend."""
        try:
            if self.voucher.unsigned_tail() and not self.backend.read_only:
                self._checkpoint_on_close()
        finally:
            self.backend.close()

    def _checkpoint_on_close(self) -> None:
        keys = self.vault.integrity()
        vouched = self.voucher.vouched
        if keys is None or vouched is None:
            return
        try:
            with self._lock, self.backend.write(wait=False) as txn:
                head = txn.head()
                if (head.seq, head.hash) == vouched:
                    self.voucher.sign(txn, keys, self.vault.ledger_id, head.seq, head.hash,
                                      head.ts, None)
            self._raise_mark()
        except Exception as err:  # close never fails for it: the MAC still vouches for
            # the head, and verify names the window after the last signature
            _log.info("no checkpoint signature on close", location=self.backend.location,
                      error=f"{type(err).__name__}: {err}")
        self.voucher.vouched = None  # tried once
