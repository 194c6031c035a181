"""The config projection: fold change events into the raw documents and their provenance.

State = the `moltis.toml` document, the `provider_keys.json` document, and for each a
provenance tree mirroring the document whose leaves are the seq of the event that last
set that leaf. Folding is pure and copy-on-write, so a state handed to readers never
changes; replaying many events from a private state (a decoded snapshot) edits in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from ledger.core.chain import GENESIS
from ledger.core.document import (
    Doc,
    apply_changes,
    apply_in_place,
    leaves,
    own_all,
)
from ledger.core.events import (
    CHANGE_DECODER,
    DOC_KEYS,
    KIND_CHANGE,
    SEALED_MARK,
    Change,
    Record,
    Row,
    decode_change_payload,
)
from ledger.core.keypaths import KeyPath

__all__ = ["EMPTY_STATE", "ConfigState", "fold", "fold_changes", "replay", "replay_changes",
           "replay_rows"]


class ConfigState(msgspec.Struct, frozen=True, gc=False):
    """The ledger's documents as of `seq` (whose event hash is `hash`). Treat the
    documents as read-only: states share unchanged subtrees with each other."""

    seq: int
    hash: bytes
    ts: int
    config: Doc = msgspec.field(default_factory=dict)
    keys: Doc = msgspec.field(default_factory=dict)
    prov_config: Doc = msgspec.field(default_factory=dict)
    prov_keys: Doc = msgspec.field(default_factory=dict)

    def document(self, doc: str) -> Doc:
        return self.keys if doc == DOC_KEYS else self.config

    def provenance(self, doc: str = "config") -> Iterator[tuple[KeyPath, int]]:
        """(leaf path, seq that set it) for every leaf of a document."""
        tree = self.prov_keys if doc == DOC_KEYS else self.prov_config
        for path, seq in leaves(tree):
            if isinstance(seq, int):
                yield path, seq


EMPTY_STATE = ConfigState(0, GENESIS, 0)


def _split(changes: Iterable[Change]) -> tuple[list[Change], list[Change]]:
    cfg: list[Change] = []
    keys: list[Change] = []
    for ch in changes:
        (keys if ch.doc == DOC_KEYS else cfg).append(ch)
    return cfg, keys


def fold(state: ConfigState, rec: Record, changes: list[Change] | None = None,
         owned: dict[int, Any] | None = None) -> ConfigState:
    """The state after one more event. `changes` may be passed when already decoded."""
    if rec.kind != KIND_CHANGE:
        return ConfigState(rec.seq, rec.hash, rec.ts, state.config, state.keys,
                           state.prov_config, state.prov_keys)
    if changes is None:
        changes = decode_change_payload(rec.payload, rec.seq).changes
    cfg_changes, key_changes = _split(changes)
    owned = {} if owned is None else owned
    config, prov_config = state.config, state.prov_config
    keys, prov_keys = state.keys, state.prov_keys
    if cfg_changes:
        config, pc = apply_changes(config, cfg_changes, prov_config, rec.seq, owned=owned)
        assert pc is not None
        prov_config = pc
    if key_changes:
        keys, pk = apply_changes(keys, key_changes, prov_keys, rec.seq, owned=owned)
        assert pk is not None
        prov_keys = pk
    return ConfigState(rec.seq, rec.hash, rec.ts, config, keys, prov_config, prov_keys)


def replay_rows(state: ConfigState, rows: Iterable[Row], *, private: bool) -> ConfigState:
    """Fold many events given as lean rows (`Backend.read_rows`). A state at seq 0
    starts from fresh empty documents; `private=True` says the caller owns `state`
    outright (just decoded from a snapshot). Either way the fold edits in place, one
    walk per change, which is what makes a full replay fast."""
    if not private:
        if state.seq != 0:
            return replay(state, (_record_of(r) for r in rows))
        state = ConfigState(0, state.hash, 0, {}, {}, {}, {})
    last: list[Row] = []
    fold_changes(state, _changes_of(rows, last))
    if not last:
        return state
    seq, _kind, _payload, hash_, ts = last[0]
    return ConfigState(seq, hash_, ts, state.config, state.keys, state.prov_config,
                       state.prov_keys)


def replay_changes(base: ConfigState | None, seq: int, hash_: bytes, ts: int,
                   changes: Iterable[tuple[int, bytes]]) -> ConfigState:
    """Fold the change events of `Backend.read_changes`, given as (seq, payload), into
    `base`, a state the caller owns outright (just decoded from a snapshot), or into
    fresh documents (None: from genesis); the state is then at the last event read
    (seq, hash, ts), which is all a replay needs of the other columns (figure 5a)."""
    if base is None:
        state = ConfigState(seq, hash_, ts, {}, {}, {}, {})
    else:
        state = ConfigState(seq, hash_, ts, base.config, base.keys, base.prov_config,
                            base.prov_keys)
    fold_changes(state, changes)
    return state


def _changes_of(rows: Iterable[Row], last: list[Row]) -> Iterator[tuple[int, bytes]]:
    """(seq, payload) of the change events among `rows`; the last row (of any kind) is
    left in `last`, whose seq, hash and ts the state takes."""
    row = None
    for row in rows:
        if row[1] == KIND_CHANGE:
            yield row[0], row[2]
    if row is not None:
        last.append(row)


def fold_changes(state: ConfigState, changes: Iterable[tuple[int, bytes]]) -> None:
    """Apply change events, given as (seq, payload), to `state`'s documents and
    provenance trees in place (the caller owns them outright).

    This loop is the whole cost of a full replay, so its common event (one change of
    the config document setting a leaf below tables that exist) is done inline, and
    where such a leaf's table and provenance table are is remembered per path: the
    same key set again costs one lookup, not two walks. Those tables stay where they
    are while only leaves are set; a leaf set over a table (which leaves that table's
    own tables behind) and anything else (which goes through decode_change_payload and
    apply_change) forget them all."""
    config, keys = state.config, state.keys
    prov_config, prov_keys = state.prov_config, state.prov_keys
    plain, decode, keys_doc = CHANGE_DECODER.decode, decode_change_payload, DOC_KEYS
    sealed_mark = SEALED_MARK
    tables: dict[KeyPath, tuple[Doc, Doc, str]] = {}  # leaf path -> its two tables, leaf
    table_of = tables.get
    for seq, payload in changes:
        try:
            changes_ = plain(payload).changes
        except (msgspec.DecodeError, UnicodeDecodeError):
            changes_ = decode(payload, seq).changes  # raises, naming the event
        if len(changes_) == 1:
            change = changes_[0]
            # `sealed`: values holding references, which decode_change_payload revives
            if change.op == "set" and change.doc != keys_doc and not change.sealed:
                path = change.path
                at = table_of(path)
                if at is None:
                    node: Any = config
                    pnode: Any = prov_config
                    for key in path[:-1]:
                        node, pnode = node.get(key), pnode.get(key)
                        if node.__class__ is not dict or pnode.__class__ is not dict:
                            break  # a table to create, or in the way: apply_change's walk
                    else:
                        at = tables[path] = (node, pnode, path[-1])
                if at is not None:
                    node, pnode, leaf = at
                    if (node.get(leaf).__class__ is dict
                            or pnode.get(leaf).__class__ is dict):
                        tables.clear()  # the tables below this leaf leave the documents
                    secret = change.secret
                    node[leaf] = change.value if secret is None else secret
                    pnode[leaf] = seq
                    continue
        tables.clear()
        if sealed_mark in payload:
            changes_ = decode(payload, seq).changes
        cfg_changes, key_changes = _split(changes_)
        apply_in_place(config, prov_config, cfg_changes, seq)
        apply_in_place(keys, prov_keys, key_changes, seq)


def _record_of(row: Row) -> Record:
    seq, kind, payload, hash_, ts = row
    return Record(seq, ts, "", "", "", kind, payload, b"", hash_)


def replay(state: ConfigState, records: Iterable[Record], *, private: bool = False
           ) -> ConfigState:
    """Fold many events. With `private=True` the caller owns `state` outright (it was
    just decoded from a snapshot) and it is edited in place, which is much faster."""
    owned: dict[int, Any] = {}
    if private:
        for tree in (state.config, state.keys, state.prov_config, state.prov_keys):
            own_all(tree, owned)
    config, keys = state.config, state.keys
    prov_config, prov_keys = state.prov_config, state.prov_keys
    seq, hash_, ts = state.seq, state.hash, state.ts
    for rec in records:
        if rec.kind == KIND_CHANGE:
            changes = decode_change_payload(rec.payload, rec.seq).changes
            if all(ch.doc != DOC_KEYS for ch in changes):
                config, pc = apply_changes(config, changes, prov_config, rec.seq, owned=owned)
                prov_config = pc if pc is not None else prov_config
            else:
                cfg_changes, key_changes = _split(changes)
                config, pc = apply_changes(config, cfg_changes, prov_config, rec.seq,
                                           owned=owned)
                keys, pk = apply_changes(keys, key_changes, prov_keys, rec.seq, owned=owned)
                prov_config = pc if pc is not None else prov_config
                prov_keys = pk if pk is not None else prov_keys
        seq, hash_, ts = rec.seq, rec.hash, rec.ts
    return ConfigState(seq, hash_, ts, config, keys, prov_config, prov_keys)
