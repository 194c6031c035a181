"""History of a ledger for operators: diff between two points, blame of a section, and
rollback (an audited event that restores an earlier state). Every output is redacted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ledger.core.document import diff_documents, get_value, leaves, same_value
from ledger.core.events import Change, Event
from ledger.core.keypaths import KeyPath, format_path, is_prefix
from ledger.core.secret_refs import SecretRef
from ledger.engine.ledger import Commit, Ledger
from ledger.engine.vault import Vault
from ledger.errors import (
    SecretDestroyedError,
    SecretError,
    VerificationError,
)
from ledger.ops.display import DOCS, DocKind, display_value
from ledger.typed.changes import Sealer
from projections.config_view import ConfigState


@dataclass(frozen=True)
class DiffEntry:
    doc: DocKind
    path: str
    kind: Literal["added", "changed", "removed"]
    old: Any = None
    new: Any = None


def diff_states(a: ConfigState, b: ConfigState, vault: Vault,
                prefix: KeyPath = (), *, doc: str | None = None) -> list[DiffEntry]:
    """Path-level differences from state `a` to state `b` (secrets masked), optionally
    only under `prefix` of one document (`doc`: "config" or "keys")."""
    out: list[DiffEntry] = []
    for doc_name in DOCS if doc is None else [d for d in DOCS if d == doc]:
        old = dict(leaves(a.document(doc_name)))
        new = dict(leaves(b.document(doc_name)))
        for path in [*old, *[p for p in new if p not in old]]:
            if prefix and not is_prefix(prefix, path):
                continue
            ov, nv = old.get(path), new.get(path)
            text = format_path(path)
            if path not in new:
                out.append(DiffEntry(doc_name, text, "removed", display_value(ov, vault)))
            elif path not in old:
                out.append(DiffEntry(doc_name, text, "added", None, display_value(nv, vault)))
            elif not same_value(ov, nv):
                out.append(DiffEntry(doc_name, text, "changed", display_value(ov, vault),
                                     display_value(nv, vault)))
    return out


@dataclass(frozen=True)
class BlameEntry:
    doc: DocKind
    path: str
    seq: int
    actor: str
    time: str
    reason: str
    source: str


def blame(ledger: Ledger, state: ConfigState, prefix: KeyPath = ()) -> list[BlameEntry]:
    """For each leaf path, the event that last set it."""
    cache: dict[int, Event | None] = {}
    out: list[BlameEntry] = []
    for doc in DOCS:
        for path, seq in state.provenance(doc):
            if prefix and not is_prefix(prefix, path):
                continue
            if seq not in cache:
                cache[seq] = ledger.event(seq)
            ev = cache[seq]
            if ev is None:
                raise VerificationError(f"event {seq} is missing from the log; run verify", seq)
            out.append(BlameEntry(doc, format_path(path), seq, ev.actor,
                                  ev.time.isoformat(), ev.reason, ev.source))
    return out


# ---------------------------------------------------------------------------------
# rollback


@dataclass
class RollbackResult:
    target: int
    changes: list[Change]
    commit: Commit | None = None
    left_unset: list[str] = field(default_factory=list)


def rollback(ledger: Ledger, to_seq: int, *, dry_run: bool = False,
             leave_destroyed_unset: bool = False, actor: str | None = None,
             reason: str | None = None, source: str = "rollback",
             expected_seq: int | None = None) -> RollbackResult:
    """Append one compensating event that makes both documents equal their state at
    `to_seq`. A target holding a shredded secret is refused, unless told to leave
    those keys unset (the value cannot come back)."""
    target = ledger.state_at(to_seq)
    result = RollbackResult(to_seq, [])

    def changes_for(state: ConfigState, _sealer: Sealer) -> list[Change]:
        changes = (diff_documents(state.config, target.config, "config")
                   + diff_documents(state.keys, target.keys, "keys"))
        destroyed = [c for c in changes  # a leaf's secret, or one inside a list
                     if any(ledger.vault.is_destroyed(r) for r in c.refs())]
        if destroyed and not leave_destroyed_unset:
            paths = ", ".join(format_path(c.path) for c in destroyed)
            raise SecretDestroyedError(
                f"seq {to_seq} holds secrets that were shredded since ({paths}); rolling back "
                "cannot bring them back. Pass --leave-destroyed-unset to roll back without them.")
        if destroyed:
            result.left_unset = [format_path(c.path) for c in destroyed]
            gone = {(c.doc, c.path) for c in destroyed}
            changes = [c for c in changes if (c.doc, c.path) not in gone]
            changes += [Change(op="unset", path=c.path, doc=c.doc) for c in destroyed
                        if get_value(state.document(c.doc), c.path) is not None]
        result.changes = changes
        return changes

    if dry_run:
        changes_for(ledger.head_state(), _NoSealer())
        return result
    result.commit = ledger.apply(changes_for, actor=actor, source=source,
                                 reason=reason or f"rollback to seq {to_seq}",
                                 rollback_to=to_seq, expected_seq=expected_seq)
    return result


class _NoSealer:
    def seal(self, plaintext: str) -> SecretRef:
        raise SecretError("a rollback never seals new secrets")

    def fingerprint(self, plaintext: str) -> str:
        raise SecretError("a rollback never fingerprints new secrets")
