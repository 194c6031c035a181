"""Snapshot encoding walks the state without copying what holds no secret (issue 16),
and its bytes stay exactly those of the stored format."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from benchmarks.largeconfig import large_config as large_doc
from ledger.core.secret_refs import SecretRef
from projections import snapshots
from projections.config_view import ConfigState


def reference_wire(value: Any) -> Any:
    """The format's definition: every dict and list rebuilt, references as Ext 1."""
    if isinstance(value, dict):
        return {k: reference_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reference_wire(v) for v in value]
    if isinstance(value, SecretRef):
        return msgspec.msgpack.Ext(1, msgspec.msgpack.encode([value.ref, value.fp]))
    return value


def reference_encode(state: ConfigState) -> bytes:
    return msgspec.msgpack.encode(
        [1, state.seq, state.hash, state.ts, reference_wire(state.config),
         reference_wire(state.keys), state.prov_config, state.prov_keys])


def ref(n: int) -> SecretRef:
    return SecretRef(ref=f"s:{n:032x}", fp=f"fp{n}")


def test_snapshot_bytes_are_the_formats_and_the_state_is_left_alone():
    config = large_doc()
    config["providers"]["anthropic"] = {"api_key": ref(1), "models": ["a", {"k": ref(2)}]}
    config["z_last"] = [[ref(3)], {"deep": {"er": [1, 2.5, None, True, b"x", ref(4)]}}]
    keys = {"providers": {"openai": {"api_key": ref(5)}}, "empty": {}, "list": []}
    state = ConfigState(7, b"h" * 32, 9, config, keys, {"server": {"port": 3}}, {})
    before = copy.deepcopy((config, keys))
    assert snapshots.encode_state(state) == reference_encode(state)
    assert (config, keys) == before  # nothing in the state was replaced
    assert snapshots.decode_state(snapshots.encode_state(state)) == state
    plain = ConfigState(1, b"h" * 32, 1, {"a": {"b": [1, "x"]}}, {}, {}, {})
    assert snapshots.encode_state(plain) == reference_encode(plain)
