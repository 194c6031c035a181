"""The forward half of a past read's proof: the head served descends from what is read.

A head is served only once its chain is recomputed from a MAC'd snapshot (or genesis)
and the head mark and MAC vouch for it (ledger.engine.read_proof). A past state at seq
N, or an event, is a row read back too: rebuilding N from the MAC'd snapshot below it
proves the chain up to the stored event N, not that the head descends from that event.
The chain is unkeyed, so a writer without the key can re-chain a prefix of the log
below the snapshot the head loads from, and only the link into the first event left
alone would tell (review round 6, F3, F3b).

So what is served is walked forward, each hash recomputed, until the walk reaches an
anchor: the head served, a hash this process proved before (for this head), or a
snapshot whose MAC checks and whose hash is the walk's (snapshot MACs bind seq and hash
and only a key holder writes them, on the history it proved). Snapshots are written
every `snapshot_every` events, so a walk costs at most that many hashes on a keyed
ledger; on a ledger without the key it reaches the head (which a keyless open walks
from genesis anyway), holding at most `_HELD` events: past that it proves the rest of
the way first, keeping a proven hash every `_SPACING` events, and serves as it goes.
Proven hashes are kept per served head (bounded) so that repeated reads of nearby seqs
(blame's metadata, diff, the web view) do not walk again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Final

from ledger.backends.base import Backend
from ledger.core.chain import ChainWalk
from ledger.core.events import Record
from ledger.engine.vault import Vault
from ledger.errors import VerificationError
from projections.config_view import ConfigState
from projections.snapshots import open_snapshot

__all__ = ["PastProof"]

# proven (seq, hash) pairs kept for the head served: ~150 bytes each; beyond this many
# they are dropped (and walked again when read again: at most to the next anchor)
_PROVEN_KEPT: Final = 1 << 14
# Events a walk holds (to serve, and their hashes to remember) while no anchor is in
# sight: past this many it proves the rest of the way ahead first (`_prove_ahead`), so
# a walk to a far head (no key: no snapshot anchors) holds this many, not the log.
_HELD: Final = 4096
# A proof ahead keeps one proven hash per this many events (thinned to fewer when
# there would be more than _PROVEN_KEPT), apart from the pairs walks leave: the walk
# that follows, and later reads, anchor at each of them.
_SPACING: Final = 256
_FIX: Final = ("Check it with `moltis-ledger verify`, then restore the newest backup "
               "(`moltis-ledger restore FILE`)")


class PastProof:
    """Forward proofs for one ReadProof: `forget` whenever the head served is replaced
    (another history, a reload from a snapshot that is not a continuation)."""

    def __init__(self, backend: Backend, vault: Vault) -> None:
        self.backend, self.vault = backend, vault
        self._proven: dict[int, bytes] = {}
        self._ahead: dict[int, bytes] = {}  # the proofs ahead's sparse pairs
        self._snapshots: tuple[int, bytes, list[int]] | None = None

    def forget(self) -> None:
        self._proven.clear()
        self._ahead.clear()
        self._snapshots = None

    def _snapshot_seqs(self, head: ConfigState) -> list[int]:
        """The stored snapshots' seqs, read once per head served: hints only (each is
        read and its MAC checked before it anchors a walk)."""
        if self._snapshots is None or self._snapshots[:2] != (head.seq, head.hash):
            self._snapshots = (head.seq, head.hash, self.backend.snapshot_seqs())
        return self._snapshots[2]

    def _anchored(self, rec: Record, head: ConfigState, snaps: list[int]) -> bool:
        """Whether the head served descends from `rec` (whose content the walk proved)."""
        seq = rec.seq
        if seq == head.seq:
            return rec.hash == head.hash
        if self._proven.get(seq) == rec.hash or self._ahead.get(seq) == rec.hash:
            return True
        at = bisect_left(snaps, seq)
        if at == len(snaps) or snaps[at] != seq:
            return False
        try:
            keys = self.vault.integrity()
        except VerificationError:
            keys = None  # a changed key check: walk on to the head
        if keys is None:
            return False
        snap = self.backend.snapshot_at(seq)
        return (snap is not None and snap.seq == seq and snap.hash == rec.hash
                and open_snapshot(keys.snapshot_mac, snap.seq, snap.hash, snap.state)
                is not None)

    def _remember(self, walked: list[tuple[int, bytes]]) -> None:
        if len(self._proven) + len(walked) > _PROVEN_KEPT:
            self._proven.clear()
        self._proven.update(walked)

    def walk(self, after: int, until: int, head: ConfigState) -> Iterator[Record]:
        """The events after `after` up to `until` (<= the head served), each yielded
        only once the walk from it, hashes recomputed, has reached an anchor (in
        batches: what one anchor proves); a walk that does not get there is refused,
        naming the first event that does not link, as a load refuses a head."""
        snaps = self._snapshot_seqs(head)
        pending: list[Record] = []
        walked: list[tuple[int, bytes]] = []
        walk: ChainWalk | None = None
        records = self._reads(after, until, head, snaps)
        first = next(records, None)
        if first is not None:
            # the first event's own hash covers the link it names: the walk proves its
            # content from there, and the anchor ahead proves that link
            walk = ChainWalk(None, after + 1, first.prev_hash)
            for rec in walk.checked(_chained(first, records)):
                if rec.seq <= until:
                    pending.append(rec)
                walked.append((rec.seq, rec.hash))
                if self._anchored(rec, head, snaps) or (
                        len(walked) >= _HELD and self._prove_ahead(rec, head, snaps)):
                    self._remember(walked)
                    walked = []
                    yield from pending
                    pending = []
                    if rec.seq >= until:
                        return
        raise self._refused(after, walk, head)

    def _prove_ahead(self, start: Record, head: ConfigState, snaps: list[int]) -> bool:
        """Walk on from `start` (proven up to itself) to an anchor without holding the
        events, keeping a proven hash every `_SPACING` events and `start`'s own; True,
        or the walk's refusal raised."""
        walk = ChainWalk(None, start.seq + 1, start.hash)
        kept, spacing = [(start.seq, start.hash)], _SPACING
        for rec in walk.checked(self.backend.read(after=start.seq, until=head.seq)):
            if rec.seq % spacing == 0:
                kept.append((rec.seq, rec.hash))
                if len(kept) > _PROVEN_KEPT:
                    kept, spacing = kept[::2], spacing * 2
            if self._anchored(rec, head, snaps):
                if len(self._ahead) + len(kept) > _PROVEN_KEPT:
                    self._ahead.clear()
                self._ahead.update(kept)
                return True
        raise self._refused(start.seq, walk, head)

    def _refused(self, after: int, walk: ChainWalk | None, head: ConfigState
                 ) -> VerificationError:
        """Why a walk from `after` did not reach an anchor, naming the first event that
        does not link, as a load refuses a head."""
        report = walk.report() if walk is not None else None
        if report is not None and not report.ok:
            why, bad = report.problem, report.first_bad_seq
        elif walk is None or report is None:
            why, bad = f"event {after + 1} is missing from the log", after + 1
        else:
            why, bad = (f"the log from event {after + 1} on does not lead to the head served "
                        f"(event {head.seq})"), report.head_seq
        return VerificationError(
            f"{self.backend.location}: {why}: the head this ledger serves does not descend "
            f"from the history read; nothing is served from it. {_FIX}", bad)

    def _reads(self, after: int, until: int, head: ConfigState, snaps: list[int]
               ) -> Iterator[Record]:
        """The events after `after`: first up to the snapshot at or after `until` where
        the walk is expected to end (a read of more rows than a walk needs costs as
        much as the walk), then, read only if that one did not anchor it, to the head."""
        at = bisect_left(snaps, until)
        stop = min(snaps[at], head.seq) if at < len(snaps) else head.seq
        yield from self.backend.read(after=after, until=stop)
        if stop < head.seq:
            yield from self.backend.read(after=stop, until=head.seq)

    def record(self, seq: int, head: ConfigState) -> Record:
        """The event at `seq` (1..head), proven."""
        for rec in self.walk(seq - 1, seq, head):
            return rec
        raise VerificationError(f"{self.backend.location}: event {seq} is missing from the "
                                f"log. {_FIX}", seq)

    def events(self, after: int, until: int | None, head: ConfigState, *,
               descending: bool = False) -> Iterator[Record]:
        """The proven events after `after` up to `until` (default: the head served).
        Descending, the log is walked a snapshot interval at a time from the top, so a
        page of the newest events costs at most one interval's hashes."""
        top = head.seq if until is None else min(until, head.seq)
        if top <= after:
            return
        if not descending:
            yield from self.walk(after, top, head)
            return
        snaps = self._snapshot_seqs(head)
        high = top
        while high > after:
            at = bisect_left(snaps, high)
            low = max(after, snaps[at - 1] if at else 0)
            yield from reversed(list(self.walk(low, high, head)))
            high = low


def _chained(first: Record, rest: Iterator[Record]) -> Iterator[Record]:
    yield first
    yield from rest
