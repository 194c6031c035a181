"""Snapshots: the projection state at a seq, as derived bytes.

A snapshot is (state, seq, head hash) and can be rebuilt from the log at any time; it
only makes reading the head and reading a past point cheap (latest snapshot at or
before the point, plus a short replayed tail) as the log grows. Stored as msgpack, with
secret references as an extension type so they never look like user data.

Snapshots are derived data, so whoever can write the database could edit one and have
readers serve it. Each one is therefore sealed with a keyed MAC (`seal_snapshot`; the
key is derived from the ledger key and never stored) over its seq, the hash of the event
it was taken at and its bytes; `open_snapshot` returns the state only when the MAC
checks. Stored as `MAGIC || mac(32) || state`: 0xff cannot start an encoded state (a
msgpack array), so snapshots written before MACs existed are told apart, and are not
trusted (rebuild-snapshots seals them).
"""

from __future__ import annotations

from typing import Any, Final

import blake3
import msgspec

from ledger.core import constant_time
from ledger.core.secret_refs import SecretRef
from projections.config_view import ConfigState

__all__ = ["SNAPSHOT_EVERY", "canonical_state", "decode_state", "encode_state", "open_snapshot",
           "seal_snapshot", "should_snapshot"]

# One snapshot every N events. A past read replays the events after the snapshot below
# it (hash and fold) and proves the rest of the way to the next snapshot (hash): about N
# hashed events per read whatever the seq (~3 us each) plus up to N-1 folded (~2-4 us
# each), so N bounds the worst past read (figures 6c/6d). Each snapshot is the whole
# config: 784 B for the docs example (3 B per event at 256), 89 KB for the large
# generated config of the benchmarks (348 B per event at 256), written by the event
# that reaches it (37 us / 0.7 ms). 512 put 6c's 99th percentile at 1/339 of a full
# replay (target 1/500); 256 halves the hashing and the folding.
SNAPSHOT_EVERY: Final = 256
_EXT_SECRET: Final = 1
_FORMAT: Final = 1
MAGIC: Final = b"\xffLS1"
_MAC_LEN: Final = 32


# Values that never hold a secret reference: returned as they are, without a call.
_LEAVES: Final = frozenset({str, int, float, bool, bytes, type(None)})


def _wire(value: Any) -> Any:
    """Secret references become an extension type (msgspec would otherwise encode the
    Struct as a plain map, indistinguishable from a user's table on the way back).

    A container holding no reference is returned as it is, not copied: a snapshot of a
    large config costs one walk, with new dicts and lists only on the paths to its
    secrets (the encoded bytes are the same either way)."""
    cls = value.__class__
    if cls is dict:
        out: dict[Any, Any] | None = None
        for k, v in value.items():
            if v.__class__ in _LEAVES:
                continue
            w = _wire(v)
            if w is not v:
                if out is None:
                    out = dict(value)  # the same key order: only this value is replaced
                out[k] = w
        return value if out is None else out
    if cls is list:
        items: list[Any] | None = None
        for i, v in enumerate(value):
            if v.__class__ in _LEAVES:
                continue
            w = _wire(v)
            if w is not v:
                if items is None:
                    items = list(value)
                items[i] = w
        return value if items is None else items
    if cls in _LEAVES:
        return value
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, SecretRef):
        return msgspec.msgpack.Ext(_EXT_SECRET, msgspec.msgpack.encode([value.ref, value.fp]))
    return value


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _EXT_SECRET:
        ref, fp = msgspec.msgpack.decode(data)
        return SecretRef(ref=ref, fp=fp)
    raise ValueError(f"unknown snapshot extension {code}")


_encoder = msgspec.msgpack.Encoder()
_canonical = msgspec.msgpack.Encoder(order="sorted")
_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def should_snapshot(seq: int, every: int = SNAPSHOT_EVERY) -> bool:
    return seq > 0 and seq % every == 0


def encode_state(state: ConfigState) -> bytes:
    return _encoder.encode(
        [_FORMAT, state.seq, state.hash, state.ts, _wire(state.config), _wire(state.keys),
         state.prov_config, state.prov_keys]
    )


def canonical_state(state: ConfigState) -> bytes:
    """Bytes that are equal exactly when two states are (map keys sorted): how verify
    compares a snapshot with the replay of the log."""
    return _canonical.encode(
        [state.seq, state.hash, state.ts, _wire(state.config), _wire(state.keys),
         state.prov_config, state.prov_keys])


def _mac(key: bytes, seq: int, hash_: bytes, encoded: bytes) -> bytes:
    h = blake3.blake3(seq.to_bytes(8, "big", signed=True), key=key)
    h.update(hash_)
    h.update(encoded)
    return h.digest()


def seal_snapshot(key: bytes, seq: int, hash_: bytes, encoded: bytes) -> bytes:
    """The stored form of an encoded state: framed with its MAC."""
    return MAGIC + _mac(key, seq, hash_, encoded) + encoded


def open_snapshot(key: bytes, seq: int, hash_: bytes, blob: bytes) -> bytes | None:
    """The encoded state of a stored snapshot whose MAC checks, else None (no MAC, or a
    MAC that does not match: edited, moved to another seq, or sealed with another key)."""
    blob = bytes(blob)
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _MAC_LEN:
        return None
    mac = blob[len(MAGIC):len(MAGIC) + _MAC_LEN]
    encoded = blob[len(MAGIC) + _MAC_LEN:]
    return encoded if constant_time.equal(mac, _mac(key, seq, hash_, encoded)) else None


def decode_state(data: bytes) -> ConfigState:
    """A private (freshly decoded) state; raises ValueError if the bytes are not ours.
    The MAC framing, if any, is skipped unchecked: check it with open_snapshot first."""
    data = bytes(data)
    if data.startswith(MAGIC):
        data = data[len(MAGIC) + _MAC_LEN:]
    try:
        fmt, seq, hash_, ts, config, keys, prov_config, prov_keys = _decoder.decode(data)
    except (msgspec.DecodeError, ValueError, TypeError) as err:
        raise ValueError(f"unreadable snapshot: {err}") from err
    if fmt != _FORMAT:
        raise ValueError(f"snapshot format {fmt} is not supported")
    return ConfigState(seq, bytes(hash_), ts, config, keys, prov_config, prov_keys)
