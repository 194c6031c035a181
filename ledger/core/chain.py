"""The hash chain: each event's hash covers its stored bytes and the previous hash.

    hash(n) = blake3_derive_key(CONTEXT)(VERSION || prev_hash || header(n) || len || payload)

`header` is a fixed binary layout of seq, ts, actor, reason, source and kind, so the
chain depends only on stored column values and never on an encoder's choices: a
SQLite ledger and its PostgreSQL copy have identical hashes. Event 1 links to GENESIS.
"""

from __future__ import annotations

import functools
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Final

import blake3
import msgspec

from ledger.core.events import Record

__all__ = ["GENESIS", "ChainWalk", "VerifyReport", "link", "verify_records"]

CONTEXT: Final = "moltis-config-ledger 2026-11-26 event chain v1"
VERSION: Final = b"\x01"
GENESIS: Final = blake3.blake3(b"moltis-config-ledger genesis v1").digest()
_U64x2 = struct.Struct(">QQ")
_U32 = struct.Struct(">I")


@functools.lru_cache(maxsize=256)  # actors, sources and kinds repeat from event to event
def _text(value: str) -> bytes:
    # surrogateescape: a tampered, non-UTF-8 column hashes as its own bytes (and fails)
    data = value.encode("utf-8", "surrogateescape")
    return _U32.pack(len(data)) + data


@functools.lru_cache(maxsize=1024)  # one look-up per event instead of four
def _texts(actor: str, reason: str, source: str, kind: str) -> bytes:
    return _text(actor) + _text(reason) + _text(source) + _text(kind)


# A hasher with the context's key already derived: each event's hasher is a copy of it,
# which costs less than deriving the key again (verify and every append hash each event)
_KEYED: Final = blake3.blake3(derive_key_context=CONTEXT)


def link(prev_hash: bytes, seq: int, ts: int, actor: str, reason: str, source: str,
         kind: str, payload: bytes) -> bytes:
    """The hash of one event, given the previous event's hash."""
    h = _KEYED.copy()
    h.update(VERSION + prev_hash + _U64x2.pack(seq, ts) + _texts(actor, reason, source, kind)
             + _U32.pack(len(payload)))
    h.update(payload)
    return h.digest()


# a Struct, not a dataclass: `get` starts without dataclasses and inspect (issue 16)
class VerifyReport(msgspec.Struct, frozen=True):
    """The result of walking the chain. `first_bad_seq` is None when it verified."""

    ok: bool
    events: int
    head_seq: int
    head_hash: bytes
    first_bad_seq: int | None = None
    problem: str | None = None
    # what `Ledger.verify` adds to the chain walk (ledger.engine.audit)
    key_fingerprint: str | None = None  # of the key that signed the head
    signed_seq: int | None = None  # the last signed head (checkpoint)
    mac_seq: int | None = None  # the head the head MAC vouches for (checked with the key)
    notes: tuple[str, ...] = ()  # worth saying, not a failure (e.g. unsealed snapshots)

    @property
    def head_hex(self) -> str:
        return self.head_hash.hex()


def verify_records(records: Iterable[Record], expect_head: bytes | None = None,
                   start_seq: int = 1, start_hash: bytes = GENESIS) -> VerifyReport:
    """Walk records in seq order and report the first that is missing, reordered,
    inserted or changed. `expect_head` (a hash recorded elsewhere) also catches a
    truncated tail, which no chain can detect on its own: it must be the hash of some
    event of the chain (the log may have grown since it was recorded)."""
    walk = ChainWalk(expect_head, start_seq, start_hash)
    deque(walk.checked(records), maxlen=0)  # consumed in C
    return walk.report()


class ChainWalk:
    """`verify_records` as a pass-through, for a reader that needs each event anyway
    (verify's replay): `checked` yields each record once it is proven to link, and
    stops at the first that does not; `report` says what the walk found."""

    __slots__ = ("_expect_head", "_expected", "_failed", "_prev", "_seen", "count")

    def __init__(self, expect_head: bytes | None = None, start_seq: int = 1,
                 start_hash: bytes = GENESIS) -> None:
        self._expect_head = expect_head
        self._expected, self._prev, self.count = start_seq, start_hash, 0
        self._seen = expect_head is None or expect_head == start_hash
        self._failed: VerifyReport | None = None

    def checked(self, records: Iterable[Record]) -> Iterator[Record]:
        expected, prev, count = self._expected, self._prev, self.count
        expect_head, seen = self._expect_head, self._seen
        # `link`, inlined with its helpers bound here: this loop is the per-event cost of
        # verify, of a past read's proof and of a catch-up (figures 7, i13c, 6c); the
        # bytes hashed are link()'s, and every read of what link() wrote checks that
        keyed, texts, version = _KEYED, _texts, VERSION
        pack_seq_ts, pack_len, join = _U64x2.pack, _U32.pack, b"".join
        try:
            for rec in records:
                seq = rec.seq
                if seq != expected:
                    why = (f"event {expected} is missing (found {seq} next)"
                           if seq > expected
                           else f"event {seq} is out of order (expected {expected})")
                    self._failed = VerifyReport(False, count, expected - 1, prev, expected,
                                                why)
                    return
                if rec.prev_hash != prev:
                    self._failed = VerifyReport(
                        False, count, expected - 1, prev, rec.seq,
                        f"event {rec.seq} does not link to event {rec.seq - 1}")
                    return
                payload = rec.payload
                try:
                    hasher = keyed.copy()
                    # one update of the bytes link() hashes in two, joined in one copy
                    hasher.update(join((version, prev, pack_seq_ts(seq, rec.ts),
                                        texts(rec.actor, rec.reason, rec.source, rec.kind),
                                        pack_len(len(payload)), payload)))
                    h: bytes | None = hasher.digest()
                except struct.error:  # a time no writer can store (negative, over 64 bits)
                    h = None
                if h is None or h != rec.hash:
                    self._failed = VerifyReport(
                        False, count, expected - 1, prev, rec.seq,
                        f"event {rec.seq} was changed after it was written")
                    return
                prev, expected, count = h, expected + 1, count + 1
                if not seen and h == expect_head:
                    seen = True
                yield rec
        finally:
            self._expected, self._prev, self.count, self._seen = expected, prev, count, seen

    def report(self) -> VerifyReport:
        """What the walk found (call it once `checked` is exhausted)."""
        if self._failed is not None:
            return self._failed
        head_seq, prev = self._expected - 1, self._prev
        if not self._seen:
            assert self._expect_head is not None
            return VerifyReport(
                False, self.count, head_seq, prev, head_seq + 1,
                f"the expected head {self._expect_head.hex()[:16]}… is not in the chain (which "
                f"ends at event {head_seq}, {prev.hex()[:16]}…): the log was truncated or "
                "replaced",
            )
        return VerifyReport(True, self.count, head_seq, prev)
