"""How the ledger's values, changes and events are shown to people and in JSON: secrets
masked (or revealed only when asked), typed configs as documents in TOML key form."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ledger.core.document import Doc
from ledger.core.events import Change, Event
from ledger.core.keypaths import format_path
from ledger.core.secret_refs import Secret, SecretRef, mask_text
from ledger.engine.vault import Vault
from ledger.errors import (
    SecretDestroyedError,
)
from ledger.schema.introspect import section_info

DocKind = Literal["config", "keys"]
DOCS: tuple[DocKind, ...] = ("config", "keys")



def display_value(value: Any, vault: Vault, *, reveal: bool = False) -> Any:
    """A document value for output: secrets masked (or revealed when asked)."""
    if isinstance(value, SecretRef):
        destroyed = vault.is_destroyed(value)
        if reveal and not destroyed:
            try:
                return vault.open_secret(value)
            except SecretDestroyedError:
                return value.mask()  # withheld by a masked export: there is no value
        return value.mask(destroyed=destroyed)
    if isinstance(value, dict):
        return {k: display_value(v, vault, reveal=reveal) for k, v in value.items()}
    if isinstance(value, list):
        return [display_value(v, vault, reveal=reveal) for v in value]
    return value


def display_doc(doc: Doc, vault: Vault, *, reveal: bool = False) -> dict[str, Any]:
    out = display_value(doc, vault, reveal=reveal)
    assert isinstance(out, dict)
    return out


def effective_document(cfg: Any) -> dict[str, Any]:
    """A typed config (`MoltisConfig`, e.g. the effective one) as a document in TOML
    key form, defaults included, absent (None) values left out, secrets masked."""
    out = _typed_value(cfg)
    assert isinstance(out, dict)
    return out


def _typed_value(value: Any) -> Any:
    if isinstance(value, Secret):
        return mask_text(value.fingerprint, destroyed=value.is_destroyed)
    if isinstance(value, msgspec.Struct):
        info = section_info(type(value))
        out = {fn.key: _typed_value(getattr(value, fn.attr)) for fn in info.ordered
               if getattr(value, fn.attr) is not None}
        if info.flatten is not None:
            out.update((k, _typed_value(v))
                       for k, v in getattr(value, info.flatten.attr).items() if v is not None)
        return out
    if isinstance(value, dict):
        return {k: _typed_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_typed_value(v) for v in value]
    return value


def display_change(change: Change, vault: Vault) -> dict[str, Any]:
    out: dict[str, Any] = {"op": change.op, "path": format_path(change.path)}
    if change.doc != "config":
        out["doc"] = change.doc
    if change.op == "set":
        out["value"] = display_value(change.new_value, vault)
    return out


def event_json(ev: Event, vault: Vault) -> dict[str, Any]:
    """An event as one JSON-safe, redacted object (for `log --json` and `watch`)."""
    out: dict[str, Any] = {
        "seq": ev.seq, "time": ev.time.isoformat(), "actor": ev.actor, "reason": ev.reason,
        "source": ev.source, "kind": ev.kind, "hash": ev.hash.hex(),
        "changes": [display_change(c, vault) for c in ev.changes],
    }
    if ev.rollback_to is not None:
        out["rollback_to"] = ev.rollback_to
    if ev.shredded:
        out["shredded"] = [r.mask() for r in ev.shredded]
    return out
