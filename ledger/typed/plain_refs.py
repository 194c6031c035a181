"""Where the raw document holds a sealed value at a position Moltis types as plain text.

Those values (a URL with a password, a sealed element of an MCP server's `args`, a
`[[hooks.hooks]]` entry's `env` value) are plain strings in the typed config, since the
gateway must get what Moltis expects there. Displays of a typed config (`show
--effective`, the web view's effective page) therefore mask them by path: this walk
names each one in the typed config's key form (old key names resolved to the current
ones, list elements by index), with the fingerprint to show.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.core.keypaths import KeyPath
from ledger.core.secret_refs import SecretRef
from ledger.schema.introspect import ROOT, TypeNode, is_any, section_info

__all__ = ["plain_ref_paths"]


def plain_ref_paths(raw: dict[str, Any]) -> dict[KeyPath, str]:
    """Every sealed value at a plain-text position of `raw`, path -> fingerprint."""
    return dict(_walk(raw, ROOT, ()))


def _keeps_ref(node: TypeNode | None) -> bool:
    # a typed `Secret` or a free-form value is a `Secret` in the typed config: it masks
    # itself; an unknown key is not in the typed config at all
    return node is None or node.kind == "secret" or is_any(node)


def _walk(raw: Any, node: TypeNode | None, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if raw.__class__ is SecretRef:
        if not _keeps_ref(node):
            yield path, raw.fp
        return
    if _keeps_ref(node):
        return
    assert node is not None
    if isinstance(raw, dict):
        if node.kind == "section" and node.cls is not None:
            info = section_info(node.cls)
            for key, value in raw.items():
                name = info.aliases.get(key) or key
                fn = info.fields.get(name)
                if fn is not None:
                    yield from _walk(value, fn.node, (*path, fn.key))
                elif info.flatten is not None:
                    yield from _walk(value, info.flatten.node.item, (*path, key))
        elif node.kind == "dict":
            for key, value in raw.items():
                yield from _walk(value, node.item, (*path, key))
        else:  # a table where the schema has one value (a union): all of it is plain
            for key, value in raw.items():
                yield from _walk(value, node, (*path, key))
    elif isinstance(raw, list):
        item = node.item if node.kind == "list" else node
        for i, value in enumerate(raw):
            yield from _walk(value, item, (*path, str(i)))
