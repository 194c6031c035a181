"""A YAML config file read as serde_yaml 0.9.34 reads it for Moltis, with ruamel's safe
loader doing the parsing (reviews r13, r21-r23).

serde reads a scalar by the type of the field it lands in, not by YAML 1.2's resolver:
a field that takes text gets the scalar's text whatever its style or tag
(`deserialize_str`), `~` or empty meaning none only for an `Option`; a number or bool
field parses a plain scalar's text whatever its tag and refuses a quoted one; a float
field parses it with `parse_f64` alone (`01` is 1.0 there); a free-form value (and any
other place) gets `deserialize_any`'s reading (`visit_scalar`): an explicit `!!bool`,
`!!int`, `!!float` or `!!null` tag parses the text as that (or Moltis refuses the
file), another tag (`!!str`, `!!binary`, `!!timestamp`) is the text, an untagged plain
scalar is `serde_plain`'s reading (`ledger.files.serde_scalars`), a quoted one the
text. A key is its text. A merge key `<<` and `=` are text.

So every scalar is built as a `_Scalar` (its text, whether it is plain, its explicit
tag); `_settle` then makes the document plain values, asking the caller how the schema
reads each place (`Reading`, `ledger.stores.config_file`). Inside a table serde reads
through its buffered `Content` (a flattened table: a provider entry), every value gets
`deserialize_any`'s reading first, so a number there stays a number that a text field
or key then refuses: Moltis does not load the file, and the notes say so.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from ledger.errors import ParseError
from ledger.files.read_notes import MAX_YAML_NODES, Reading, ReadNotes
from ledger.files.serde_scalars import (
    parse_bool,
    parse_f64,
    parse_int,
    parse_null,
    serde_plain,
)

__all__ = ["explicitly_tagged", "load_yaml", "tag_noting_composer"]

Path = tuple[str, ...]

_TAGGED = {"bool": parse_bool, "int": parse_int, "float": parse_f64}


class _Table(dict[Any, Any]):
    """A YAML mapping, with the keys it gave twice (the last entry is the one kept)."""

    __slots__ = ("twice",)

    def __init__(self) -> None:
        super().__init__()
        self.twice: list[Any] = []


class _Scalar:
    """A scalar as written: its text, whether it is plain, its explicit core tag (None:
    untagged). Equal to, and hashed as, its text, so a key given twice (`1:` and `"1":`)
    is still one key given twice."""

    __slots__ = ("plain", "tag", "text")

    def __init__(self, text: str, plain: bool, tag: str | None) -> None:
        self.text, self.plain, self.tag = text, plain, tag

    def __eq__(self, other: object) -> bool:
        return self.text == (other.text if isinstance(other, _Scalar) else other)

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:  # as the text it stands for (a key that is no text, `? [a]`)
        return repr(self.text)


@functools.cache
def tag_noting_composer() -> Any:
    """A ruamel composer that keeps which scalars carry an explicit tag (ruamel's nodes
    do not say; `explicitly_tagged` asks): this reader's, and the base of the YAML
    editor's (`ledger.stores.yaml_edit`)."""
    from ruamel.yaml.composer import Composer

    class MoltisYamlComposer(Composer):
        def compose_scalar_node(self, anchor: Any) -> Any:
            tag = self.parser.peek_event().ctag
            node = super().compose_scalar_node(anchor)
            if tag is not None and str(tag) != "!":
                self.__dict__.setdefault("explicit", set()).add(id(node))
            return node

    return MoltisYamlComposer


def explicitly_tagged(constructor: Any, node: Any) -> bool:
    """Whether the scalar `node` a constructor builds was written with an explicit tag
    (`!!float 1`), as its loader's `tag_noting_composer` noted."""
    return id(node) in constructor.loader.composer.__dict__.get("explicit", ())


def _build(self: Any, node: Any) -> _Scalar:
    tag = str(node.tag).rsplit(":", 1)[-1] if explicitly_tagged(self, node) else None
    return _Scalar(node.value, node.style is None, tag)


@functools.cache
def _constructor() -> type:
    from ruamel.yaml.constructor import SafeConstructor

    class MoltisYamlConstructor(SafeConstructor):
        def flatten_mapping(self, node: Any) -> None:
            return None  # `<<` is not merged

        def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any,
                              value: Any) -> bool:
            if key in mapping:  # the last entry is kept, as serde keeps a map's; `_settle`
                # refuses it in a section, where serde says "duplicate field"
                self.__dict__.setdefault("twice", {}).setdefault(id(node), []).append(
                    key.text if isinstance(key, _Scalar) else key)
            return True

        def construct_yaml_map(self, node: Any) -> Any:
            data = _Table()
            yield data
            data.update(self.construct_mapping(node))
            data.twice = self.__dict__.get("twice", {}).pop(id(node), [])

    for tag in ("str", "null", "bool", "int", "float", "timestamp", "binary", "merge",
                "value"):
        MoltisYamlConstructor.add_constructor(f"tag:yaml.org,2002:{tag}", _build)
    MoltisYamlConstructor.add_constructor("tag:yaml.org,2002:map",
                                          MoltisYamlConstructor.construct_yaml_map)
    return MoltisYamlConstructor


def load_yaml(text: str, where: str, reading: Reading | None = None,
              notes: ReadNotes | None = None) -> Any:
    """The document of a YAML file's text, each place read as `reading` says the schema
    reads it (None: as free-form values); `notes` gets what that changed. ParseError
    names the file and line, never a value (a duplicate key's values may be secrets)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = tag_noting_composer()
    yaml.Constructor = _constructor()
    try:
        parsed = yaml.load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ParseError(f"{where}: invalid YAML{at}: {problem}") from None
    if isinstance(parsed, _Scalar):
        parsed = _any(parsed, where, ())
    if parsed is None:
        return {}
    return _settle(parsed, where, reading, ReadNotes() if notes is None else notes)


def _settle(parsed: Any, where: str, reading: Reading | None, notes: ReadNotes) -> Any:
    """The document as plain values: a copy in which every alias is its own value (one
    place may take a scalar's text where another takes its number), each scalar read
    as its place says (`_read`), a key as its text. Paths are followed only where
    `reading` says the schema types a table (memory grows with the document, not with
    its depth), asked once per key of such a table and once per array. In document
    order (the notes too). Refuses more than MAX_YAML_NODES values once aliases are
    expanded."""
    budget = MAX_YAML_NODES
    root = [parsed]
    typed = reading is not None
    stack: list[tuple[Any, Any, Path | None, str | None]] = [
        (root, 0, () if typed else None, "section" if typed else None)]
    while stack:  # no recursion: a deep document is refused where it is stored
        holder, slot, path, kind = stack.pop()
        budget -= 1
        if budget < 0:
            raise ParseError(f"{where}: more than {MAX_YAML_NODES:,} values once YAML aliases "
                             "are expanded; this is not a configuration file")
        item = holder[slot]
        if isinstance(item, _Scalar):
            holder[slot] = value = _read(item, kind, path, where, notes)
            if isinstance(value, float) and not math.isfinite(value):
                notes.non_finite_read = True  # `.inf`, `.nan`: placed by the caller
            continue
        if not isinstance(item, dict | list):
            continue
        inner = path if kind in ("table", "section") and reading is not None else None
        pushed: list[tuple[Any, Any, Path | None, str | None]] = []
        if isinstance(item, dict):
            if isinstance(item, _Table) and item.twice:
                _given_twice(item.twice, kind, path, reading, where, notes)
            holder[slot] = table = {}
            for given, value in item.items():
                key = given.text if isinstance(given, _Scalar) else given
                table[key] = value
                below: Path | None = None
                how = None
                if inner is not None and reading is not None:
                    below = (*inner, str(key))
                    how, buffered = reading(below)
                    if buffered and isinstance(given, _Scalar) and not isinstance(
                            _any(given, where, below), str):
                        notes.add(notes.refused_keys, below)  # Content keeps the number
                pushed.append((table, key, below, how))
        else:
            holder[slot] = items = list(item)
            how = reading((*inner, "0"))[0] if inner is not None and reading else None
            pushed = [(items, i, None if inner is None else (*inner, str(i)), how)
                      for i in range(len(items))]
        stack.extend(reversed(pushed))
    return root[0]


def _given_twice(keys: list[Any], kind: str | None, path: Path | None,
                 reading: Reading | None, where: str, notes: ReadNotes) -> None:
    """Keys given twice in one mapping: serde refuses a field of a section given twice
    ("duplicate field"); elsewhere (a map, a free-form value, a key a section does not
    know, which serde skips) it keeps the last entry, as the reader did."""
    at = f"{_path_text(path)}: " if path else ""
    for key in keys:
        below = None if path is None else (*path, str(key))
        if kind == "section" and below is not None and reading is not None \
                and reading(below)[0] is not None:
            raise ParseError(f"{where}: {at}duplicate field {json.dumps(str(key))}: given "
                             "twice in one "
                             "table (Moltis refuses that too)")
        if below is not None:
            notes.add(notes.given_twice, below)


def _read(item: _Scalar, kind: str | None, path: Path | None, where: str,
          notes: ReadNotes) -> Any:
    """A scalar as serde reads it at a place of `kind` (see `Reading`)."""
    if kind in ("text", "text?"):  # `deserialize_str` (`deserialize_option` first)
        if kind == "text?" and item.plain and (item.tag == "null" or (
                item.tag is None and parse_null(item.text))):  # `deserialize_option`
            if item.tag == "null" and not parse_null(item.text):
                return _any(item, where, path)  # refused: "expected null"
            return None
        if path is not None and item.plain and item.tag is None and not isinstance(
                serde_plain(item.text), str):
            notes.add(notes.texts, path)
        return item.text
    if kind in ("float", "scalar"):  # a plain scalar parsed, whatever its tag
        if not item.plain:
            return item.text  # a quoted number: Moltis refuses it, and so does the check
        if kind == "float" and not parse_null(item.text):
            number = parse_f64(item.text)
            return item.text if number is None else number
        return serde_plain(item.text)
    value = _any(item, where, path)
    if kind == "refused" and value is not None and not isinstance(value, str):
        if path is not None:
            notes.add(notes.refused_texts, path)  # buffered: Moltis refuses the number
        return item.text
    return value


def _any(item: _Scalar, where: str, path: Path | None) -> Any:
    """`deserialize_any`'s reading (`visit_scalar`)."""
    if item.tag == "null":
        if parse_null(item.text):
            return None
    elif item.tag in _TAGGED:
        value = _TAGGED[item.tag](item.text)
        if value is not None:
            return value
    elif item.tag is None and item.plain:
        return serde_plain(item.text)
    else:
        return item.text
    at = f"{_path_text(path)}: " if path else ""
    raise ParseError(f"{where}: {at}a value that is not what its !!{item.tag} tag says "
                     "(Moltis refuses the file too)")


def _path_text(path: Path) -> str:
    """A path for a message, each key that is not bare as an ASCII-only JSON string: a
    key holding a newline, a control or a bidi character cannot forge or reorder a line
    of the message (unlike `ledger.core.keypaths.stored_path`'s form, which keeps
    non-ASCII text as it is)."""
    return ".".join(key if key.replace("_", "").replace("-", "").isalnum() and key.isascii()
                    else json.dumps(key) for key in path)
