"""Change events: what the log stores, and the codec between events and stored bytes.

An event row is a `Record` (the backend seam: plain columns plus the payload bytes and
the two hashes); its payload is one of the payload Structs below, encoded once with a
deterministic encoder. The chain hashes those stored bytes, never a re-encoding, so a
later msgspec version cannot break history. Kinds are stable strings, never class names.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from ledger.core.keypaths import KeyPath, format_path, parse_path
from ledger.core.secret_refs import SecretRef, refs_in, revive_markers
from ledger.errors import VerificationError

__all__ = [
    "CHANGE_DECODER",
    "KIND_CHANGE",
    "KIND_SHRED",
    "SEALED_MARK",
    "Change",
    "ChangePayload",
    "Event",
    "Record",
    "ShredPayload",
]

KIND_CHANGE: Final = "change"
KIND_SHRED: Final = "shred"
# In every change payload with a change holding secrets inside a list (`Change.sealed`):
# the byte test before looking at the decoded changes
SEALED_MARK: Final = b'"sealed":true'

# The two documents the ledger keeps: `moltis.toml` and `provider_keys.json`.
DOC_CONFIG: Final = "config"
DOC_KEYS: Final = "keys"
DocName = Literal["config", "keys"]


class Change(msgspec.Struct, frozen=True, omit_defaults=True):
    """One path-level change. `set` carries the new leaf (a scalar, a list or `{}`);
    `unset` removes the path and everything under it. A secret leaf carries `secret`
    (reference + fingerprint) and never its value.

    A list may hold secrets too (an MCP server's `--api-key` argument, a hook's `env`
    inside `[[hooks.hooks]]`): those elements are stored as references in the list,
    in their JSON form `{"$secret": ref, "fp": fp}`, and `sealed` says the value holds
    such references (set by `encode_payload`; events without it, all those written
    before, are read exactly as before: their lists hold no references)."""

    op: Literal["set", "unset"]
    path: KeyPath
    value: Any = None
    secret: SecretRef | None = None
    doc: DocName = "config"
    sealed: bool = False

    @property
    def new_value(self) -> Any:
        return self.secret if self.secret is not None else self.value

    def refs(self) -> Iterator[SecretRef]:
        """Every stored reference this change sets (the leaf's, or those in its list)."""
        if self.secret is not None:
            yield self.secret
        elif self.value.__class__ is list:
            yield from refs_in(self.value)

    def describe(self) -> str:
        where = doc_path_text(self.doc, self.path)
        if self.op == "unset":
            return f"unset {where}"
        if self.secret is not None:
            return f"set {where} = {self.secret.mask()}"
        shown = msgspec.json.encode(_masked(self.value))
        return f"set {where} = {shown.decode()}"


def _masked(value: Any) -> Any:
    if isinstance(value, SecretRef):
        return value.mask()
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value


class ChangePayload(msgspec.Struct, frozen=True, omit_defaults=True):
    changes: list[Change]
    # Set on compensating events written by `rollback`: the seq the config was restored to.
    rollback_to: int | None = None


class ShredPayload(msgspec.Struct, frozen=True, omit_defaults=True):
    """Secret values were destroyed. The references stay in history (who set them, when,
    with which fingerprint); the values are gone."""

    secrets: list[SecretRef]
    paths: list[str] = []


class Record(msgspec.Struct, frozen=True, gc=False):
    """A stored event row, exactly as the backends keep it."""

    seq: int
    ts: int  # microseconds since the Unix epoch, UTC; never decreases along the log
    actor: str
    reason: str
    source: str
    kind: str
    payload: bytes
    prev_hash: bytes
    hash: bytes


# A lean event row: what a replay needs (seq, kind, payload, hash, ts), nothing more.
Row = tuple[int, str, bytes, bytes, int]


class Event(msgspec.Struct, frozen=True):
    """A decoded event, for history readers (log, blame, diff, watch)."""

    seq: int
    ts: int
    actor: str
    reason: str
    source: str
    kind: str
    hash: bytes
    prev_hash: bytes
    changes: tuple[Change, ...] = ()
    rollback_to: int | None = None
    shredded: tuple[SecretRef, ...] = ()
    shredded_paths: tuple[tuple[DocName, KeyPath], ...] = ()  # where those secrets were held

    def touches(self, prefix: KeyPath, doc: str | None = None) -> bool:
        """Whether this event changed (or shredded) something at or under `prefix`."""
        for d, p in [*((c.doc, c.path) for c in self.changes), *self.shredded_paths]:
            if (doc is None or d == doc) and (p[: len(prefix)] == prefix
                                               or prefix[: len(p)] == p):
                return True
        return False

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.ts / 1_000_000, tz=UTC)

    @property
    def paths(self) -> list[str]:
        return [format_path(c.path) for c in self.changes]


_encoder = msgspec.json.Encoder(order="deterministic")
_change_decoder = msgspec.json.Decoder(ChangePayload)
# The bare decoder, for the replay's inner loop (figure 5a): a payload without
# SEALED_MARK decodes to its final changes, and any error goes through
# `decode_change_payload`, which names the event.
CHANGE_DECODER: Final = _change_decoder
_shred_decoder = msgspec.json.Decoder(ShredPayload)


def encode_payload(payload: ChangePayload | ShredPayload) -> bytes:
    if isinstance(payload, ChangePayload) and any(
            not c.sealed and c.value.__class__ is list and any(refs_in(c.value))
            for c in payload.changes):
        payload = msgspec.structs.replace(payload, changes=[
            msgspec.structs.replace(c, sealed=True)
            if not c.sealed and c.value.__class__ is list and any(refs_in(c.value)) else c
            for c in payload.changes])
    return _encoder.encode(payload)


def _damaged(seq: int | None, err: Exception) -> VerificationError:
    what = f"event {seq}" if seq is not None else "an event"
    return VerificationError(f"{what} cannot be decoded ({err}): the log is damaged; run "
                             "verify", seq)


def decode_change_payload(data: bytes, seq: int | None = None) -> ChangePayload:
    try:
        payload = _change_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:  # validation errors included
        raise _damaged(seq, err) from None
    if SEALED_MARK in data:  # references inside list values (see `Change`)
        payload = msgspec.structs.replace(payload, changes=[
            msgspec.structs.replace(c, value=revive_markers(c.value)) if c.sealed else c
            for c in payload.changes])
    return payload


def decode_event(rec: Record) -> Event:
    if rec.kind == KIND_CHANGE:
        p = decode_change_payload(rec.payload, rec.seq)
        return Event(
            seq=rec.seq, ts=rec.ts, actor=rec.actor, reason=rec.reason, source=rec.source,
            kind=rec.kind, hash=rec.hash, prev_hash=rec.prev_hash,
            changes=tuple(p.changes), rollback_to=p.rollback_to,
        )
    if rec.kind == KIND_SHRED:
        try:
            s = _shred_decoder.decode(rec.payload)
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            raise _damaged(rec.seq, err) from None
        return Event(
            seq=rec.seq, ts=rec.ts, actor=rec.actor, reason=rec.reason, source=rec.source,
            kind=rec.kind, hash=rec.hash, prev_hash=rec.prev_hash,
            shredded=tuple(s.secrets),
            shredded_paths=tuple(_parse_doc_path(t) for t in s.paths),
        )
    # A newer writer's kind: keep it readable instead of failing the whole history.
    return Event(
        seq=rec.seq, ts=rec.ts, actor=rec.actor, reason=rec.reason, source=rec.source,
        kind=rec.kind, hash=rec.hash, prev_hash=rec.prev_hash,
    )


def doc_path_text(doc: str, path: KeyPath) -> str:
    """`providers.openai.api_key`, or `keys:openai.apiKey` for the keys document."""
    return format_path(path) if doc == DOC_CONFIG else f"keys:{format_path(path)}"


def _parse_doc_path(text: str) -> tuple[DocName, KeyPath]:
    if text.startswith("keys:"):
        return "keys", parse_path(text[5:])
    return "config", parse_path(text)


def now_us() -> int:
    import time

    return time.time_ns() // 1000
