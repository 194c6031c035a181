"""How the ledger's values, changes and events are shown to people and in JSON: secrets
masked (or revealed only when asked), typed configs as documents in TOML key form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ledger.core.document import MISSING, Doc, get_value
from ledger.core.events import Change, Event
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import Secret, SecretRef, mask_text, parse_mask, refs_at
from ledger.engine.vault import Vault
from ledger.errors import ConfigValidationError, SecretDestroyedError, SecretError

if TYPE_CHECKING:
    # the typed layer (the schema) is loaded by the typed displays that need it, so
    # showing a raw value (`moltis-ledger get`) starts fast
    from ledger.engine.queries import Ref
    from ledger.stores.ledger_store import LedgerConfigStore
    from ledger.typed.flags import Flags

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


def shown_text(value: Any, vault: Vault) -> Any:
    """A plain-text value of a typed config for output (say a provider's effective
    `base_url`): masked when the secret policy seals it (a URL with credentials), with
    the fingerprint the ledger stores for it."""
    # lazy: the schema package loads only for the typed displays (CLI start-up)
    from ledger.schema.secret_policy import url_has_credential

    if isinstance(value, str) and url_has_credential(value):
        try:
            fp: str | None = vault.fingerprint(value)
        except SecretError:
            fp = None
        return mask_text(fp)
    return value


def display_doc(doc: Doc, vault: Vault, *, reveal: bool = False) -> dict[str, Any]:
    out = display_value(doc, vault, reveal=reveal)
    assert isinstance(out, dict)
    return out


def effective_document(cfg: Any, masked: Mapping[KeyPath, str | None] | None = None
                       ) -> dict[str, Any]:
    """A typed config (`MoltisConfig`, e.g. the effective one) as a document in TOML
    key form, defaults included, absent (None) values left out, secrets masked.

    `masked` (from `ledger.typed.layers.masked_paths`) names the leaves whose value came
    from a sealed `[env]` entry through `${VAR}`: they are secrets too, shown as masks."""
    out = _typed_value(cfg)
    assert isinstance(out, dict)
    for path, fp in (masked or {}).items():
        _mask_at(out, path, mask_text(fp))
    return out


async def effective_shown(store: LedgerConfigStore, ref: Ref | None = None, *,
                          flags: Flags | None = None, env: Mapping[str, str] | None = None
                          ) -> dict[str, Any]:
    """The effective config at REF as shown to people and in JSON: typed secrets,
    free-form channel secrets and values `${VAR}` took from a sealed `[env]` entry all
    masked. (`load_effective` is what the gateway gets: plain values, never shown.)"""
    # lazy: schema and decoders load on first use (CLI start-up)
    from ledger.typed.flags import NO_FLAGS

    # lazy: schema and decoders load on first use (CLI start-up)
    from ledger.typed.layers import masked_paths

    eff, raw = store.effective_at(ref, flags=NO_FLAGS if flags is None else flags, env=env)
    doc = effective_document(eff.config, masked_paths(eff, raw))
    # what the stored config holds went through the secret policy when it was written
    # (sealed); what the layers put on top of it did not: run the same policy over it
    contributed = {*eff.env_paths, *eff.flag_paths, *eff.substituted}
    return _mask_contributed(doc, contributed, store.ledger.vault)


class _ShownSealer:
    """The write path's sealer stand-in: seals nothing, only names the fingerprint a
    secret would be shown with (None without a key)."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def fingerprint(self, plaintext: str) -> str:
        try:
            return self.vault.fingerprint(plaintext)
        except SecretError:
            return ""

    def seal(self, plaintext: str) -> SecretRef:
        return SecretRef(ref="shown", fp=self.fingerprint(plaintext))


def _mask_contributed(doc: dict[str, Any], paths: set[KeyPath], vault: Vault
                      ) -> dict[str, Any]:
    """`doc` with the secrets among the values at `paths` masked, by the one secret
    policy as `set` applies it (`ledger.typed.changes.materialize`: schema secrets,
    secret-shaped keys of free-form maps, URL userinfo, secret list elements)."""
    if not paths:
        return doc
    # lazy: the typed layer loads only for the typed displays (CLI start-up)
    from ledger.typed.changes import materialize
    from ledger.typed.convert import RawChange  # lazy, as above

    sealer = _ShownSealer(vault)
    for path in sorted(paths):
        value = get_value(doc, path)
        if value is MISSING or not isinstance(value, str | dict | list):
            continue
        try:
            changes = materialize([RawChange("set", path, value)], {}, sealer,
                                  where="effective")
        except ConfigValidationError:
            # a value `set` would refuse is not shown either: fail closed, masked whole
            _mask_at(doc, path, mask_text(None))
            continue
        for change in changes:
            if change.secret is not None:
                _mask_at(doc, change.path, mask_text(change.secret.fp or None))
            else:
                for at, ref in refs_at(change.value, change.path):
                    _mask_at(doc, at, mask_text(ref.fp or None))
    return doc


def _mask_at(doc: dict[str, Any], path: KeyPath, mask: str) -> None:
    node: Any = doc
    for i, key in enumerate(path):
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            index: Any = int(key)  # an element of a list (a sealed `args` entry)
        elif isinstance(node, dict) and key in node:
            index = key
        else:
            return
        child = node[index]
        if i == len(path) - 1 or not isinstance(child, dict | list):
            if not (isinstance(child, str) and parse_mask(child) is not None):
                node[index] = mask  # the leaf, or the value that holds it (not a mask yet)
            return
        node = child


def _typed_value(value: Any) -> Any:
    if isinstance(value, Secret):
        return mask_text(value.fingerprint, destroyed=value.is_destroyed)
    if isinstance(value, msgspec.Struct):
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.schema.introspect import section_info

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
