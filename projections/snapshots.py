"""Snapshots: the projection state at a seq, as derived bytes.

A snapshot is (state, seq, head hash) and can be rebuilt from the log at any time; it
only makes reading the head and reading a past point cheap (latest snapshot at or
before the point, plus a short replayed tail) as the log grows. Stored as msgpack, with
secret references as an extension type so they never look like user data.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from ledger.core.secret_refs import SecretRef
from projections.config_view import ConfigState

__all__ = ["SNAPSHOT_EVERY", "decode_state", "encode_state", "should_snapshot"]

# One snapshot every N events: reading any point replays at most N-1 events. At about a
# microsecond per event that bounds a past read near half a millisecond, and costs a few
# bytes per event on disk for a typical config.
SNAPSHOT_EVERY: Final = 512
_EXT_SECRET: Final = 1
_FORMAT: Final = 1


def _wire(value: Any) -> Any:
    """Secret references become an extension type (msgspec would otherwise encode the
    Struct as a plain map, indistinguishable from a user's table on the way back)."""
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
_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def should_snapshot(seq: int, every: int = SNAPSHOT_EVERY) -> bool:
    return seq > 0 and seq % every == 0


def encode_state(state: ConfigState) -> bytes:
    return _encoder.encode(
        [_FORMAT, state.seq, state.hash, state.ts, _wire(state.config), _wire(state.keys),
         state.prov_config, state.prov_keys]
    )


def decode_state(data: bytes) -> ConfigState:
    """A private (freshly decoded) state; raises ValueError if the bytes are not ours."""
    try:
        fmt, seq, hash_, ts, config, keys, prov_config, prov_keys = _decoder.decode(data)
    except (msgspec.DecodeError, ValueError, TypeError) as err:
        raise ValueError(f"unreadable snapshot: {err}") from err
    if fmt != _FORMAT:
        raise ValueError(f"snapshot format {fmt} is not supported")
    return ConfigState(seq, bytes(hash_), ts, config, keys, prov_config, prov_keys)
