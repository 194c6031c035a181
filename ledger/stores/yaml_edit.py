"""Comment-preserving edits of a `moltis.yaml`: apply path-level changes with
ruamel.yaml's round-trip mode, which keeps comments, key order and quoting.

ruamel.yaml is the maintained YAML library that keeps comments on a load/dump round
trip (PyYAML drops them), so a hand-written `moltis.yaml` keeps its notes after the file
store or `switch-backend` writes it, as `moltis.toml` does through `toml_edit`. Like
the TOML editor, the caller re-parses the result with the safe loader and compares it
with the expected document, so a surprise never silently writes a wrong config.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from ledger.core.events import Change
from ledger.files.yaml_read import serde_plain

__all__ = ["edit_yaml"]


def _round_trip() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long value (a URL, a prompt) onto two lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def edit_yaml(text: str, changes: Sequence[Change]) -> str:
    """The YAML text with `changes` applied; untouched lines keep their comments."""
    from ruamel.yaml.comments import CommentedMap

    yaml = _round_trip()
    doc = yaml.load(text) if text.strip() else None
    if doc is None:
        doc = CommentedMap()
    for change in changes:
        *parents, leaf = change.path
        node = doc
        for name in parents:
            key = _key_in(node, name)
            child = node.get(key)
            if not isinstance(child, dict):
                if change.op == "unset":
                    break
                child = CommentedMap()
                node[key] = child
            node = child
        else:
            leaf = _key_in(node, leaf)
            if change.op == "set":
                node[leaf] = _plain(change.value)
            elif leaf in node:
                del node[leaf]
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _key_in(node: Any, key: str) -> Any:
    """The key of `node` (a round-trip table) that the document's text key `key` stands
    for: the reader gives a plain number, bool or null key its text, as serde_yaml does
    (`ledger.files.yaml_read`), while the round-trip tree keys it by the number (a
    telegram account keyed by its numeric ID), so it is found by its text."""
    if key in node:
        return key
    wanted = serde_plain(key)
    if isinstance(wanted, str):
        return key
    for k in node:  # (True == 1 in Python: a bool only stands for a bool)
        if not isinstance(k, str) and isinstance(k, bool) == isinstance(wanted, bool) \
                and k == wanted:
            return k
    return key


def _plain(value: Any) -> Any:
    """Plain containers (ruamel dumps them block-style like the rest of the file)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _plain(v)
        return out
    if isinstance(value, list | tuple):
        return CommentedSeq([_plain(v) for v in value])
    return value
