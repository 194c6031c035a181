"""Turning an edit (typed changes, a whole new document, one path) into stored `Change`s.

This is where secrets leave plaintext: every leaf the schema marks secret (or any
`Secret` object) is sealed through a `Sealer` and the change carries only its
reference and fingerprint. Two exceptions are kept readable on purpose: a value that is
just a `${VAR}` reference (not a secret itself), and a mask placeholder from a masked
export, which records "a secret with this fingerprint, value withheld".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from ledger.core.document import (
    MISSING,
    apply_changes,
    diff_documents,
    get_value,
    normalize_value,
    same_value,
)
from ledger.core.events import Change, DocName
from ledger.core.keypaths import KeyPath
from ledger.core.secret_refs import Secret, SecretRef, parse_mask
from ledger.schema.introspect import field_at, is_secret_path, other_spellings
from ledger.schema.secret_policy import url_has_credential
from ledger.typed.convert import RawChange
from ledger.typed.list_secrets import seal_list
from ledger.typed.masks import is_live, placeholder_ref

__all__ = ["Sealer", "materialize", "materialize_document", "replace_tables"]

_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


class Sealer(Protocol):
    def seal(self, plaintext: str) -> SecretRef: ...

    def fingerprint(self, plaintext: str) -> str: ...


def is_env_reference(value: Any) -> bool:
    return isinstance(value, str) and _REFERENCE.fullmatch(value) is not None


SecretTest = Callable[[KeyPath], bool]


def _secret_leaf(path: KeyPath, value: Any, current: Any, sealer: Sealer) -> SecretRef | None:
    """The stored form of a secret leaf, or None when it equals the current value."""
    if isinstance(value, Secret):
        value = value.given()
    if isinstance(value, SecretRef):
        return None if value == current else value
    mask = parse_mask(value)
    if mask is not None:
        held = {current.fp: current} if isinstance(current, SecretRef) else {}
        live = isinstance(current, SecretRef) and is_live(current)
        ref = placeholder_ref(path, value, mask, held, live=live)
        return None if ref == current else ref
    if isinstance(current, SecretRef) and current.fp == sealer.fingerprint(value):
        return None
    return sealer.seal(value)


def _list_changes(path: KeyPath, value: list[Any], current: Any, doc: DocName,
                  sealer: Sealer, out: list[Change]) -> None:
    """A list value: its secrets sealed in place (`ledger.typed.list_secrets`)."""
    node = field_at(path) if doc == "config" else None
    sealed, holds = seal_list(value, current, node, sealer, path)
    if current is not MISSING and same_value(sealed if holds else value, current):
        return  # the same list (its secrets with the same fingerprints): nothing to record
    out.append(Change(op="set", path=path, value=sealed if holds else value, doc=doc))


def _leaf_changes(path: KeyPath, value: Any, current: Any, doc: DocName, sealer: Sealer,
                  secret: SecretTest, out: list[Change]) -> None:
    if isinstance(value, dict) and value:
        cur = current if isinstance(current, dict) else {}
        for key, child in value.items():
            _leaf_changes((*path, key), child, cur.get(key, MISSING), doc, sealer, secret, out)
        return
    if isinstance(value, list) and value:
        _list_changes(path, value, current, doc, sealer, out)
        return
    # the policy's rules 1-3 (`ledger.schema.secret_policy`); a mask placeholder (from a
    # masked export) is a secret withheld wherever it stands, never a value to store
    is_secret = isinstance(value, Secret | SecretRef) or (
        isinstance(value, str) and not is_env_reference(value)
        and (secret(path) or url_has_credential(value) or parse_mask(value) is not None)
    )
    if is_secret:
        ref = _secret_leaf(path, value, current, sealer)
        if ref is not None:
            out.append(Change(op="set", path=path, secret=ref, doc=doc))
        return
    if current is not MISSING and same_value(value, current):
        return  # already so: setting a value to itself records nothing
    out.append(Change(op="set", path=path, value=value, doc=doc))


def materialize(raw_changes: Iterable[RawChange], raw: Mapping[str, Any], sealer: Sealer,
                where: str, doc: DocName = "config",
                secret: SecretTest = is_secret_path) -> list[Change]:
    """Stored changes for changes found on the typed view: values are checked, tables
    expanded into leaves, secrets sealed.

    Each change is weighed against the document as the earlier changes of the same edit
    leave it, so a set that they already made true records nothing (emptying a table
    by unsetting its keys leaves `{}`: a following `set table = {}` is no change)."""
    out: list[Change] = []
    pending = list(raw_changes)
    working = raw
    for n, rc in enumerate(pending, 1):
        start = len(out)
        if rc.op == "unset":
            if get_value(working, rc.path) is not MISSING:
                out.append(Change(op="unset", path=rc.path, doc=doc))
        else:
            for i, key in enumerate(rc.path):  # its keys, like the keys inside a value
                normalize_value(key, rc.path[:i + 1], where)
            value = normalize_value(rc.value, rc.path, where)
            current = get_value(working, rc.path)
            _leaf_changes(rc.path, value, current, doc, sealer, secret, out)
        if len(out) > start and n < len(pending):
            # copy-on-write along the changed paths only (a single change, the common
            # edit, never gets here)
            working, _ = apply_changes(dict(working), out[start:])
    return out


def replace_tables(raw_changes: Iterable[RawChange], raw: Mapping[str, Any]) -> list[RawChange]:
    """Make explicit sets replace what is there: setting a path that holds a table
    first unsets it, and setting below a value first unsets that value. A set or unset
    of a field also unsets its other spellings in that table (`url` beside
    `base_url`: Moltis refuses a table holding both)."""
    out: list[RawChange] = []
    for rc in raw_changes:
        for other in other_spellings(rc.path):
            if get_value(raw, (*rc.path[:-1], other)) is not MISSING:
                out.append(RawChange("unset", (*rc.path[:-1], other)))
        if rc.op == "set":
            for i in range(1, len(rc.path)):
                above = get_value(raw, rc.path[:i])
                if above is not MISSING and not isinstance(above, dict):
                    out.append(RawChange("unset", rc.path[:i]))
                    break
            current = get_value(raw, rc.path)
            if isinstance(current, dict) and current and not (
                isinstance(rc.value, dict) and rc.value
            ):
                out.append(RawChange("unset", rc.path))
        out.append(rc)
    return out


def materialize_document(old: Mapping[str, Any], new: Mapping[str, Any], sealer: Sealer,
                         where: str, doc: DocName = "config",
                         secret: SecretTest = is_secret_path) -> list[Change]:
    """Stored changes that turn document `old` into `new` (a whole-document save or an
    import). Secret leaves of `new` may be plaintext, `Secret`s or mask placeholders."""
    plain = diff_documents(old, new, doc)
    out: list[Change] = []
    for ch in plain:
        if ch.op == "unset":
            out.append(ch)
            continue
        current = get_value(old, ch.path)
        _leaf_changes(ch.path, ch.new_value, current, doc, sealer, secret, out)
    return out
