"""The hash chain: each event's hash covers its stored bytes and the previous hash.

    hash(n) = blake3_derive_key(CONTEXT)(VERSION || prev_hash || header(n) || len || payload)

`header` is a fixed binary layout of seq, ts, actor, reason, source and kind, so the
chain depends only on stored column values and never on an encoder's choices: a
SQLite ledger and its PostgreSQL copy have identical hashes. Event 1 links to GENESIS.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from typing import Final

import blake3
import msgspec

from ledger.core.events import Record

__all__ = ["GENESIS", "VerifyReport", "link", "verify_records"]

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


def link(prev_hash: bytes, seq: int, ts: int, actor: str, reason: str, source: str,
         kind: str, payload: bytes) -> bytes:
    """The hash of one event, given the previous event's hash."""
    h = blake3.blake3(derive_key_context=CONTEXT)
    h.update(
        VERSION + prev_hash + _U64x2.pack(seq, ts) + _text(actor) + _text(reason)
        + _text(source) + _text(kind) + _U32.pack(len(payload))
    )
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
    expected, prev, count = start_seq, start_hash, 0
    seen_expected = expect_head is None or expect_head == start_hash
    for rec in records:
        if rec.seq != expected:
            why = (f"event {expected} is missing (found {rec.seq} next)" if rec.seq > expected
                   else f"event {rec.seq} is out of order (expected {expected})")
            return VerifyReport(False, count, expected - 1, prev, expected, why)
        if rec.prev_hash != prev:
            return VerifyReport(False, count, expected - 1, prev, rec.seq,
                                f"event {rec.seq} does not link to event {rec.seq - 1}")
        try:
            h: bytes | None = link(prev, rec.seq, rec.ts, rec.actor, rec.reason, rec.source,
                                   rec.kind, rec.payload)
        except struct.error:  # a time no writer can store (negative, over 64 bits)
            h = None
        if h is None or h != rec.hash:
            return VerifyReport(False, count, expected - 1, prev, rec.seq,
                                f"event {rec.seq} was changed after it was written")
        prev, expected, count = h, expected + 1, count + 1
        if not seen_expected and h == expect_head:
            seen_expected = True
    head_seq = expected - 1
    if not seen_expected:
        assert expect_head is not None
        return VerifyReport(
            False, count, head_seq, prev, head_seq + 1,
            f"the expected head {expect_head.hex()[:16]}… is not in the chain (which ends at "
            f"event {head_seq}, {prev.hex()[:16]}…): the log was truncated or replaced",
        )
    return VerifyReport(True, count, head_seq, prev)
