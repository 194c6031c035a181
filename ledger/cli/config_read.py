"""The bodies of the plain read commands (`get`), without click: the click command in
`config_cmds` and the argv fast path in `ledger.cli.fast` both call them with a `State`,
so the work, the trust checks and the output are one implementation whichever parser
ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.cli.base import CommandError, State, doc_path, run_async

__all__ = ["array_element", "run_get", "unknown_key"]


def array_element(doc: str, key: tuple[str, ...], *, action: str,
                  held: Mapping[str, Any] | None = None) -> CommandError | None:
    """The error for a path below an array (`hooks.hooks.0.timeout`, or below an array
    stored in a free-form map, `held` being the document): an array's elements have no
    path of their own, the array is set as a whole (review r11: this was "unknown key",
    pointing at --allow-unknown, which then failed too; review r12: below a stored
    array in a free-form map, the array was replaced by a table)."""
    from ledger.core.document import get_value
    from ledger.core.keypaths import format_doc_path
    from ledger.schema.introspect import field_at

    for i in range(1, len(key)):
        node = field_at(key[:i]) if doc == "config" else None
        if (node is not None and node.kind == "list") or (
                held is not None and isinstance(get_value(held, key[:i]), list)):
            array = format_doc_path(doc, key[:i])
            return CommandError(
                f"{format_doc_path(doc, key)}: {array} is an array, whose elements have no "
                f"path of their own: {action} it as a whole",
                kind="array-element",
                hint=f"`moltis-ledger --json get {array}` shows it; change it and pass it "
                     f"back: moltis-ledger set {array} '[...]' (a masked secret left as it "
                     "is keeps its value)")
    return None


def unknown_key(doc: str, key: tuple[str, ...], *, action: str) -> CommandError:
    """"unknown key" (a path Moltis does not know), distinct from "not set"."""
    from ledger.core.keypaths import format_doc_path
    from ledger.typed.suggest import did_you_mean, suggest_doc_paths

    element = array_element(doc, key, action=action)
    if element is not None:
        return element

    near = suggest_doc_paths(doc, key)
    hint = ("`moltis-ledger show --effective` lists every key Moltis knows, with the "
            "value in force; `moltis-ledger check` lists the keys Moltis ignores")
    if action == "set":
        hint = "pass --allow-unknown to store it anyway (Moltis ignores keys it does not know)"
    return CommandError(f"{format_doc_path(doc, key)}: unknown key: Moltis does not know "
                        f"it{did_you_mean(near)}", kind="unknown-key", hint=hint)


def run_get(state: State, path: str, ref: str | None, effective: bool) -> None:
    """`moltis-ledger get PATH [--at REF] [--effective]` (see its help)."""
    from ledger.cli.render import json_text
    from ledger.core.document import MISSING, get_value
    from ledger.core.keypaths import format_doc_path, format_path
    from ledger.core.value_text import value_text
    from ledger.ops.display import display_value

    doc, key = doc_path(path)
    if effective and doc == "keys":
        raise CommandError("--effective applies to configuration paths; "
                           "`moltis-ledger providers effective` shows what the gateway uses "
                           "per provider", kind="usage")
    store = state.store()
    ledger = store.ledger
    seq = state.seq(ref)
    snapshot = ledger.state_at(seq)
    source: dict[str, Any] | None = None
    if effective:  # through the store, exactly as the gateway reads it
        from ledger.ops.display import effective_shown

        value = get_value(run_async(effective_shown(store, seq)), key)
        if value is MISSING:
            value = get_value(snapshot.config, key)  # an unknown key the ledger holds
            if value is not MISSING:
                value = display_value(value, ledger.vault)
        elif ref is None:
            meta = run_async(store.source_metadata())
            prov = meta.get(format_path(key))
            source = prov.to_dict() if prov is not None else None
    else:
        value = get_value(snapshot.document(doc), key)
        if value is not MISSING:
            value = display_value(value, ledger.vault)
    if value is MISSING:
        from ledger.typed.suggest import unknown_path  # the schema, only for a missing key

        if unknown_path(doc, key):
            raise unknown_key(doc, key, action="get")
        hint = (" (it has a default: see `get --effective`)"
                if not effective and doc == "config" else "")
        raise CommandError(f"{format_doc_path(doc, key)} is not set at seq {seq}{hint}",
                           kind="not-set")
    if state.json:
        out: dict[str, Any] = {"path": format_doc_path(doc, key), "seq": seq, "value": value}
        if effective:
            out["source"] = source
        state.out.json(out)
        return
    state.out.text(json_text(value) if isinstance(value, dict) else value_text(value))
    if source is not None:
        state.out.note(f"from {source.get('layer')}: {source.get('origin', '')}".rstrip(": "))
