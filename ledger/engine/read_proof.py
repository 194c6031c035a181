"""The read proof: whether what is read back from the backend may be served.

The Ledger (ledger.engine.ledger) owns one `ReadProof` and calls it under its lock: on
the first load the head is checked against the head mark beside the ledger key
(ledger.engine.head_mark) and the stored head MAC or signature (ledger.engine.head_vouch);
a state is rebuilt only from a snapshot whose MAC checks (or genesis) plus a tail whose
chain is recomputed to the head; another process's events are caught up only as the
continuation of the history already served; a replaced history (a restore, tampering)
is read again with the open-time checks. The write path uses it to catch up inside its
transaction and to raise the head mark after a checkpoint. Nothing here writes events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from ledger._log import get_logger
from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE, Backend, Head, SnapshotRow
from ledger.core.chain import ChainWalk
from ledger.core.events import KIND_CHANGE, Record, Row
from ledger.engine.head_mark import (
    HeadMark,
    head_mark_problem,
    mark_location,
    mark_path,
    marked_ledger,
    raise_mark,
)
from ledger.engine.head_vouch import (
    ADOPT_HINT,
    mac_verdict,
    signature_verdict,
    unvouched,
)
from ledger.engine.integrity_keys import history_of
from ledger.engine.past_proof import PastProof
from ledger.engine.vault import Vault
from ledger.errors import InvalidRefError, LedgerError, StoreError, VerificationError
from projections.config_view import EMPTY_STATE, ConfigState, fold_changes, replay
from projections.snapshots import decode_state, open_snapshot

__all__ = ["CATCH_UP_LIMIT", "RESTORE_FIX", "ReadProof"]

# Rotations by other processes that one head check follows before it gives up (each
# needs a commit of another key check between two reads of the MAC row)
_ROTATIONS_FOLLOWED: Final = 4
# Head reads one open makes while the head mark is ahead of the head it read (each
# needs another writer's checkpoint committed and marked between two reads)
_MARK_TRIES: Final = 4
# the engine's logger: hosts and tests filter the ledger's lines by this name
_log = get_logger("ledger.engine.ledger")
# the way out of a refusal of what the log holds (a read, a rebuild of snapshots)
RESTORE_FIX: Final = ("Check it with `moltis-ledger verify`, then restore the newest "
                      "backup (`moltis-ledger restore FILE`)")
CATCH_UP_LIMIT: Final = 4096  # beyond this many new events, reload from a snapshot


def _changes(records: Iterable[Record], last: list[Record]) -> Iterator[tuple[int, bytes]]:
    """(seq, payload) of the change events among `records` (another kind, a shred, changes
    no document), as `fold_changes` takes them; the last record is left in `last`."""
    rec = None
    for rec in records:
        if rec.kind == KIND_CHANGE:
            yield rec.seq, rec.payload
    if rec is not None:
        last.append(rec)


class ReadProof:
    """The checks between the backend and a served state, for one Ledger (which calls
    them under its lock). `forget_vouched` is the Ledger's: a replaced history drops
    the head it vouched for."""

    def __init__(self, backend: Backend, vault: Vault,
                 forget_vouched: Callable[[], None]) -> None:
        self.backend, self.vault = backend, vault
        self._forget_vouched = forget_vouched
        # the head mark (ledger.engine.head_mark) is checked once, on the first load;
        # an operator accepting an older ledger (sign-head --adopt, restore) skips it
        self.accept_older_head = False
        self.mark_checked = False
        # past states and events are served only once the head descends from them
        self.past = PastProof(backend, vault)

    def mark_problem(self, head_seq: int,
                     unreadable: Callable[[str], None] | None = None) -> str | None:
        """Why `head` is older than the head mark beside the ledger key (a copy of the
        database put back), or None (ledger.engine.head_mark). A mark that cannot be
        used is said through `unreadable` (default: a warning in the log)."""
        if self.backend.name == "memory":
            return None

        def hash_at(seq: int) -> bytes | None:
            rec = self.backend.record(seq)
            return rec.hash if rec is not None else None

        return head_mark_problem(self.vault.keys, self.vault.ledger_id,
                                 mark_location(self.backend.name, self.backend.location),
                                 head_seq, hash_at, unreadable or self._warn_unreadable)

    def _warn_unreadable(self, message: str) -> None:
        _log.warning(message, location=self.backend.location)

    def check_mark(self, head: Head) -> None:
        if self.mark_checked or self.accept_older_head:
            return
        for _ in range(_MARK_TRIES):
            problem = self.mark_problem(head.seq)
            if problem is None:
                break
            # A writer raises the mark only once its event is durable in the log, so one
            # that committed a checkpoint since `head` was read (writer processes at
            # work) has its event in the log now: read the head again. An older copy
            # put back still lacks it, and a log rewritten past it has another event
            # there (mark_problem compares the hash).
            now = self.backend.head()
            if now.seq <= head.seq:
                break
            head = now
        if problem is not None:
            raise VerificationError(f"{self.backend.location}: {problem}", head.seq)
        self.refuse_head_behind(head)
        self.vouch_head(head)
        self.mark_checked = True

    def refuse_head_behind(self, head: Head) -> None:
        """A stored head behind the log: PostgreSQL's head row moved back (with the head
        MAC row saved when that head was current put back beside it, the MAC vouches for
        it) while the events after it are still in the log. A writer that committed
        since `head` was read has moved the head on: read again, it has reached them
        (review round 6, F4; `verify` says the same)."""
        if self.backend.record(head.seq + 1) is None:
            return
        now = self.backend.head()
        if now.seq <= head.seq:
            raise StoreError(
                f"{self.backend.location}: the stored head says event {now.seq}, but event "
                f"{head.seq + 1} is in the log after it: the head row is behind the log "
                "(moved back: tampering or damage); run `moltis-ledger verify`")

    def vouch_head(self, head: Head) -> None:
        """The stored head MAC against `head`, for a read (an open, and a catch-up that
        serves new events): refused when it disowns the log; a tail appended without
        the key is served, and said (mac_verdict)."""
        problem, tail = self.mac_verdict(head)
        if problem is not None:
            raise self.disowned(problem, head.seq)
        if tail:
            # a writer without the key may append (by design), but nothing vouches for
            # what it wrote: served, and said so (DESIGN.md: verify does not vouch)
            first = head.seq - tail + 1
            _log.warning(
                f"{tail} event{'s' if tail > 1 else ''} at the head (events {first}.."
                f"{head.seq}) {'were' if tail > 1 else 'was'} appended without the ledger "
                "key: nothing vouches for them, yet they are served. Check them with "
                "`moltis-ledger log`, then vouch for them with "
                "`moltis-ledger sign-head --adopt`", location=self.backend.location,
                unvouched=tail, vouched_seq=head.seq - tail)

    def disowned(self, problem: str, seq: int) -> VerificationError:
        """The refusal of a head the stored head MAC disowns (`problem`: mac_verdict's)."""
        return VerificationError(
            f"{self.backend.location}: this ledger is not the history this key vouched "
            f"for: {problem}. {RESTORE_FIX}; `moltis-ledger sign-head --adopt` "
            "accepts a ledger only once `verify` passes", seq)

    def mac_problem(self, head: Head) -> str | None:
        """Why a keyed open refuses `head` (mac_verdict), or None."""
        return self.mac_verdict(head)[0]

    def mac_verdict(self, head: Head) -> tuple[str | None, int]:
        """(why the stored head MAC disowns `head`, or None; how many events at the head
        come after the MAC'd one: a tail appended without the key) — see
        ledger.engine.head_vouch.mac_verdict. (None, 0) without the ledger key, and on a
        ledger never keyed (no key_check row, no MAC row, and nothing of it opens with
        the key held: ledger.engine.key_proof; a ledger whose rows open with the key
        lost those two rows, and is refused). Checked with the head mark on the first
        load: without the mark (deleted, a new config dir) a re-chained log is still
        refused by a holder of the key.

        A keyed ledger (a key_check row) with events and no MAC row is refused: every
        keyed append writes the MAC row, and a writer without the key leaves it behind
        (its tail is counted), so the row was deleted, typically with a truncated log
        whose head mark was deleted too; or the key was added after the ledger's first
        events (then `sign-head --adopt` once). A ledger signed the old way (before head
        MACs) is vouched for by its signature (head_vouch.signature_verdict).

        Another process's key rotation may commit after this one unlocked the key: its
        MAC is under the new key. A MAC that does not check is followed to a new key
        only when the key check row read with it (one read: a rotation writes both in
        one transaction) is not the held key's; the key is then read again from its
        source (ledger.engine.vault: it must match that key check) and the MAC checked
        with it. A MAC row and key check forged for another key stay refused: no key
        source gives a key matching them, and this key's own proof of the ledger names
        the changed key check (ledger.engine.key_proof)."""
        if head.seq == 0:
            return None, 0

        def hash_at(seq: int) -> bytes | None:
            # a MAC for an event after `head` is a writer that committed since `head` was
            # read only if the stored head, read again, has reached it: PostgreSQL's head
            # row moved back under a MAC'd newer event is a rollback (review round 5, R6)
            rec = self.backend.record(seq) if seq else None
            if rec is not None and seq > head.seq and (now := self.backend.head()).seq < seq:
                raise StoreError(
                    f"{self.backend.location}: the stored head says event {now.seq}, but "
                    f"event {seq}, which the head MAC names, is in the log: the head row is "
                    "behind the log (moved back: tampering or damage); run "
                    "`moltis-ledger verify`")
            return rec.hash if rec is not None else None

        verdict: tuple[str | None, int] = (None, 0)
        for _ in range(_ROTATIONS_FOLLOWED):
            rows = self.backend.meta_items()  # the MAC row and the key check of one commit
            if history_of(rows.get) != self.vault.history:
                self.vault.reload()  # a restore or an import forked it (Ledger.fork_history)
            if rows.get(HEAD_MAC) is None and rows.get("key_check") is None:
                # never keyed, or both rows deleted: the held key's proof tells (the
                # ledger's own rows that only it could have written); rows a forger
                # deletes or adds decide nothing (ledger.engine.key_proof)
                return self.missing_check_problem(), 0
            keys = self.vault.integrity()
            if keys is None:
                return None, 0
            vouch = mac_verdict if rows.get(HEAD_MAC) is not None else signature_verdict
            verdict = vouch(rows.get, keys, self.vault.ledger_id,
                                  (head.seq, head.hash), hash_at)
            if verdict[0] is None or self.vault.holds(rows.get("key_check")):
                return verdict
            self.vault.forget_key()  # a rotation committed since: read the key again
        return verdict

    def missing_check_problem(self) -> str | None:
        """Vault.missing_check_problem, also under the ledger id the head mark beside
        the key names: the ledger_id row binds sealed rows and MACs and is a row a
        forger can change too (then nothing opens under it, and the mark, kept per
        ledger id, no longer applies). A key that opens this ledger's rows under the
        marked id proves the row was changed (review round 5, R1b); a mark of this very
        ledger proves the key wrote it, when every row it wrote is gone."""
        problem = self.vault.missing_check_problem()
        if problem is not None or self.backend.name == "memory":
            return problem
        marked = marked_ledger(self.vault.keys)
        if marked is None:
            return None
        if marked == self.vault.ledger_id:
            # only a keyed writer of this very ledger writes its mark: every row the key
            # wrote (key check, head MAC, sealed rows, snapshots) was deleted
            return ("the head mark beside the ledger key names this ledger, so it was "
                    "written with this key, yet its key_check and head MAC rows are "
                    "missing: they were deleted (a log rolled back or rewritten loses "
                    "them)")
        problem = self.vault.missing_check_problem(marked)
        if problem is None:
            return None
        return (f"its ledger_id row ({self.vault.ledger_id.decode(errors='replace')!r}) is "
                f"not the ledger its rows were written for ({marked.decode()!r}, named by "
                f"the head mark beside the key): it was changed; {problem}")

    def raise_mark_to(self, pending: tuple[int, bytes] | None, *, lower: bool = False
                      ) -> None:
        """After a commit that signed a checkpoint (`pending`, the voucher's `to_mark`):
        raise the head mark to it, if it is in the log (a rolled-back transaction's is
        not). Never fails the commit, which is already durable: a mark not written only
        lets a replay go unnoticed."""
        if pending is None or self.backend.name == "memory" or not self.vault.ledger_id:
            return
        try:
            rec = self.backend.record(pending[0])
            if rec is None or rec.hash != pending[1]:
                return
            key = self.vault.master_key()
            raise_mark(mark_path(self.vault.keys), key,
                       HeadMark(self.vault.ledger_id.decode(), rec.seq, rec.hash.hex(),
                                mark_location(self.backend.name, self.backend.location)),
                       lower=lower)
        except (LedgerError, OSError) as err:
            _log.warning("the head mark cannot be written", location=self.backend.location,
                         error=str(err))

    def catch_up(self, state: ConfigState, head: Head, *, reading: bool = False
                 ) -> ConfigState:
        """`state` brought to `head`: the events after it, chained from it (or, far
        behind, a load from a MAC'd snapshot), or everything read again when another
        history took its place. `reading`: the new events are served, so the head MAC
        is checked as an open checks it (a writer checks it with its own append)."""
        if head.seq == state.seq and head.hash == state.hash:
            return state
        if state.seq == 0:
            # the empty ledger this process opened was imported into (import-bundle,
            # a backend copy): the ledger id, key check and history id came with the
            # events, and a MAC made under the old id would vouch for nothing (review r10)
            self.vault.reload()
        if head.seq < state.seq:
            served = self.backend.record(state.seq)
            if served is not None and served.hash == state.hash:
                # The event this process served is still in the log, so the log was not
                # replaced: the stored head (PostgreSQL's head row) was moved back.
                raise StoreError(
                    f"{self.backend.location}: the stored head says event {head.seq}, but "
                    f"event {state.seq}, served before, is still in the log: the head was "
                    "moved back (tampering or damage); run `moltis-ledger verify`")
        if head.seq <= state.seq:
            # The head went backwards, or another history has the same seq: a restore,
            # or tampering. Never keep serving (or building on) what was cached.
            _log.warning("the ledger head went backwards or was replaced: reloading; run "
                         "verify if no restore was made", location=self.backend.location,
                         served_seq=state.seq, served_hash=state.hash.hex()[:16],
                         head_seq=head.seq, head_hash=head.hash.hex()[:16])
            return self.replaced(head)
        if head.seq - state.seq > CATCH_UP_LIMIT:
            # reloaded from a snapshot, not walked event by event: only if the log still
            # holds the event this reader served (else another history took its place)
            served = self.backend.record(state.seq)
            if served is None or served.hash != state.hash:
                return self.replaced(head)
            if reading and not self.accept_older_head:
                self.vouch_head(head)
            return self.load_head(head)
        walk = ChainWalk(None, state.seq + 1, state.hash)
        records = list(walk.checked(self.backend.read(after=state.seq, until=head.seq)))
        if len(records) != head.seq - state.seq or records[-1].hash != head.hash:
            # not the history this reader served, continued: reload it from a MAC'd
            # snapshot with the open-time checks (an event changed in place is refused
            # there, naming it)
            _log.warning("ledger history changed under a reader; reloading",
                         location=self.backend.location, seq=walk.report().first_bad_seq)
            return self.replaced(head)
        if reading and not self.accept_older_head:
            self.vouch_head(head)
        started = time.perf_counter()
        new = replay(state, records)
        _log.debug("caught up", seq=new.seq, events=len(records),
                   duration_ms=round((time.perf_counter() - started) * 1000, 3))
        return new

    def replaced(self, head: Head) -> ConfigState:
        """Another history took this one's place (a restore): its ledger id, and so what
        secrets and the head MAC are bound to, may differ; read everything again."""
        self.vault.reload()
        self._forget_vouched()
        # what an open checks, checked again: a restore lowers the head mark and vouches
        # for the copy it put in place; a log rolled back under a running reader is
        # refused here as a fresh open refuses it (review round 5, R2)
        self.mark_checked = False
        self.check_mark(head)
        return self.load_head(head)

    def load_head(self, head: Head) -> ConfigState:
        """load_at for the head served: what was proven to descend from the head served
        before is forgotten (this one is not shown to continue it)."""
        self.past.forget()
        return self.load_at(head)

    def load_at(self, head: Head) -> ConfigState:
        """The state at `head.seq`: the latest good snapshot at or before it + the tail."""
        if head.seq == 0:
            return EMPTY_STATE
        started = time.perf_counter()
        base, private = EMPTY_STATE, False
        snap = self.backend.snapshot_at(head.seq)
        while snap is not None:
            state = self.trusted_snapshot(snap)
            if state is not None:
                base, private = state, True
                break
            snap = self.backend.snapshot_at(snap.seq - 1)  # fall back to an older one
        # the tail is replayed only as far as its chain is proven from the base (a MAC'd
        # snapshot, or genesis) and it must end at the head served: a payload edited in
        # place, its hash columns left as they were, is refused, never served
        walk = ChainWalk(None, base.seq + 1, base.hash)
        last: list[Record] = []
        # folded straight from the walk (no row per event: figure 6c); into the
        # snapshot's own documents (decoded for this load), or fresh ones from genesis
        docs = base if private else ConfigState(0, base.hash, 0, {}, {}, {}, {})
        fold_changes(docs, _changes(walk.checked(
            self.backend.read(after=base.seq, until=head.seq)), last))
        state = base if not last else ConfigState(
            last[0].seq, last[0].hash, last[0].ts, docs.config, docs.keys, docs.prov_config,
            docs.prov_keys)
        if state.seq != head.seq or state.hash != head.hash:
            report = walk.report()
            bad = report.first_bad_seq if not report.ok else state.seq + 1
            raise VerificationError(
                f"{self.backend.location}: "
                f"{report.problem or f'the log ends at event {state.seq}, not at the head'}"
                f": nothing is served from it. {RESTORE_FIX}", bad)
        _log.info("rebuilt", seq=state.seq, from_snapshot=base.seq,
                  events=state.seq - base.seq,
                  duration_ms=round((time.perf_counter() - started) * 1000, 3))
        return state

    def proven_rows(self, after: int, prev: bytes, until: int | None
                    ) -> tuple[ChainWalk, Iterator[Row]]:
        """The events after `after` (whose hash is `prev`) up to `until`, as replay rows,
        each only once the chain is recomputed to it: the walk stops at the first that
        does not link, and says why (`walk.report()`)."""
        walk = ChainWalk(None, after + 1, prev)
        rows = ((r.seq, r.kind, r.payload, r.hash, r.ts)
                for r in walk.checked(self.backend.read(after=after, until=until)))
        return walk, rows

    def trusted_snapshot(self, snap: SnapshotRow) -> ConfigState | None:
        """A snapshot's state if it is readable and matches the log, else None (logged):
        snapshots are derived data and are never trusted over the log. Only a snapshot
        whose MAC checks with the ledger key is used; without the key, the log is
        replayed (also when the key check row was changed, for an operator's
        verify or restore: `accept_older_head`)."""
        try:
            keys = self.vault.integrity()
        except VerificationError:
            if not self.accept_older_head:
                raise
            return None
        if keys is None:
            return None
        encoded = open_snapshot(keys.snapshot_mac, snap.seq, snap.hash, snap.state)
        if encoded is None:
            _log.warning("ignoring a snapshot whose MAC does not check (edited, or written "
                         "without the ledger key); verify names it, rebuild-snapshots "
                         "replaces it", location=self.backend.location, seq=snap.seq)
            return None
        try:
            state = decode_state(encoded)
        except ValueError as err:
            _log.warning("ignoring an unreadable snapshot", seq=snap.seq, error=str(err))
            return None
        rec = self.backend.record(snap.seq)
        if rec is None or not rec.hash == snap.hash == state.hash or state.seq != snap.seq:
            _log.warning("ignoring a snapshot that does not match the log", seq=snap.seq)
            return None
        return state

    def state_at(self, seq: int, head: ConfigState) -> ConfigState:
        """The state as of event `seq` (0 = before the first event); `head` is the
        state served at the head."""
        if seq == head.seq:
            return head
        if seq < 0 or seq > head.seq:
            raise InvalidRefError(f"seq {seq} is outside the log (0..{head.seq})")
        if seq == 0:
            return EMPTY_STATE
        # the stored event at `seq` is proven an ancestor of `head` (PastProof) before
        # its state is rebuilt from the MAC'd snapshot below it (review round 6, F3)
        rec = self.past.record(seq, head)
        return self.load_at(Head(seq, rec.hash, rec.ts))

    def head_problem(self) -> str | None:
        """Why the stored MAC or signature does not vouch for the current head (None when
        one does, or for an empty ledger), as `check` reports it. Without the ledger
        key only the signature can be looked at."""
        head = self.backend.head()
        keys = self.vault.integrity()
        if head.seq == 0:
            return None
        if keys is not None:
            problem = unvouched(self.backend.get_meta, keys, self.vault.ledger_id,
                                (head.seq, head.hash))
        elif self.backend.get_meta(HEAD_SIGNATURE) is None:
            problem = "the head is not signed"
        else:
            return None
        return None if problem is None else f"{problem}; {ADOPT_HINT}"
