"""Comment-preserving edits of a `moltis.yaml`: apply path-level changes with
ruamel.yaml's round-trip mode, which keeps comments, key order and quoting.

ruamel.yaml is the maintained YAML library that keeps comments on a load/dump round
trip (PyYAML drops them), so a hand-written `moltis.yaml` keeps its notes after the file
store or `switch-backend` writes it, as `moltis.toml` does through `toml_edit`. Like
the TOML editor, the caller re-parses the result with the safe loader and compares it
with the expected document, so a surprise never silently writes a wrong config.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import Any

from ledger.core.events import Change
from ledger.files.yaml_read import explicitly_tagged, tag_noting_composer

__all__ = ["edit_yaml"]


def _round_trip() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.Composer = _text_keys()
    yaml.Constructor, yaml.Representer, yaml.Emitter = _verbatim()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long value (a URL, a prompt) onto two lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def edit_yaml(text: str, changes: Sequence[Change]) -> str:
    """The YAML text with `changes` applied; untouched lines keep their comments."""
    from ruamel.yaml.comments import CommentedMap

    yaml = _round_trip()
    doc = yaml.load(text) if text.strip() else None
    if not isinstance(doc, dict):  # empty, or a document that is only a null
        doc = CommentedMap()
    for change in changes:
        *parents, leaf = change.path
        node = doc
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                if change.op == "unset":
                    break
                child = CommentedMap()
                node[key] = child
            node = child
        else:
            if change.op == "set":
                node[leaf] = _plain(change.value)
            elif leaf in node:
                del node[leaf]
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


@functools.cache
def _text_keys() -> Any:
    """A composer whose plain keys are all text, as the reader gives them
    (`ledger.files.yaml_read`: serde_yaml reads a key as its text): the round-trip tree
    would key `123456789:` (a telegram account keyed by its numeric ID), `+14155550100:`
    or `0612345678:` by a number and write it back changed, so the document's text keys
    were not found and a second, quoted key was added (reviews r21, r22). Such a key is
    written back quoted, which reads the same."""
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.tag import Tag

    text = "tag:yaml.org,2002:str"

    # the reader's composer notes explicit tags: `!!float 1` is kept as written (`_verbatim`)
    class TextKeys(tag_noting_composer()):  # type: ignore[misc]  # a class made at first use
        def compose_mapping_node(self, anchor: Any) -> Any:
            node = super().compose_mapping_node(anchor)
            for key, _ in node.value:
                if isinstance(key, ScalarNode) and key.style is None and str(key.tag) != text:
                    key.tag = Tag(suffix=text)
            return node

    return TextKeys


class _Verbatim:
    """A number, bool, null, timestamp or binary scalar of the file, kept as written:
    ruamel's round trip writes `True` as `true`, `+1` as `1`, `1e400` as `.inf`, `~` as
    nothing, `!!float 1` as `!!float '1'`, a `!!binary` as a block, and each of those
    reads differently for Moltis (a text field gets the text: reviews r23, r24), so the
    write was refused or changed what Moltis reads. Written back as its own text, with
    its tag and style (`!`: an explicit tag on a plain scalar, kept plain: `_Emitter`)."""

    __slots__ = ("style", "tag", "text")

    def __init__(self, tag: Any, text: str, style: str | None) -> None:
        self.tag, self.text, self.style = tag, text, style


@functools.cache
def _verbatim() -> tuple[Any, Any, Any]:
    from ruamel.yaml.constructor import RoundTripConstructor
    from ruamel.yaml.emitter import RoundTripEmitter
    from ruamel.yaml.representer import RoundTripRepresenter

    class Constructor(RoundTripConstructor):
        def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any,
                              value: Any) -> bool:
            return True  # a key given twice: the last entry, as the reader and serde keep

    def build(self: Any, node: Any) -> _Verbatim:
        style = "!" if explicitly_tagged(self, node) and node.style is None else node.style
        return _Verbatim(node.tag, node.value, style)

    for name in ("bool", "int", "float", "null", "timestamp", "binary"):
        Constructor.add_constructor(f"tag:yaml.org,2002:{name}", build)

    class Representer(RoundTripRepresenter):
        pass

    Representer.add_representer(_Verbatim, lambda self, data: self.represent_scalar(
        data.tag, data.text, style=data.style))

    class _Emitter(RoundTripEmitter):
        def choose_scalar_style(self) -> Any:
            if self.event.style == "!":  # explicitly tagged and plain: stays plain
                return ""
            return super().choose_scalar_style()

    return Constructor, Representer, _Emitter


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
