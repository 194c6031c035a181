"""A YAML config file read as serde_yaml 0.9.34 reads it for Moltis, with ruamel's safe
loader doing the parsing (review r13, r21).

serde_yaml resolves a plain (unquoted) scalar by its own rules, not YAML 1.2's
(`de.rs` `visit_untagged_scalar`): `~`/`null`/`Null`/`NULL`/empty is null;
`true`/`True`/`TRUE` and the false forms are bools; an integer is decimal, or `0x`,
`0o`, `0b` with an optional sign, but never with a leading zero (`0042` is text,
`digits_but_not_number`) or an underscore (`1_000` is text); a float is what Rust parses
as a finite f64, or `.inf`/`.nan` (`1e400` is text); everything else is text, timestamps
included. A field or map key that takes text (`deserialize_str`) gets any plain
scalar's text, so `theme: 0x1F` is "0x1F". A merge key `<<` is a key like any other.

And serde reads a field by its type: a field that takes text gets any plain scalar's
text (`deserialize_str`), a float field `parse_f64` of it (`01` is 1.0 there, `0x0` is
refused), anything else the untagged reading. So every plain scalar is built as a
`_Plain` holding both readings; `_settle` then makes the document plain values, asking
the caller how the schema reads each place (`Reading`, `ledger.stores.config_file`).
A plain key is its text; inside a table serde reads through its buffered `Content` (a
flattened table), a key serde reads as a number is refused by Moltis, which the notes
say. An explicitly tagged scalar (`!!str 123`) is what its tag says.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

from ledger.errors import ParseError

__all__ = ["MAX_NOTES", "MAX_YAML_NODES", "Reading", "YamlNotes", "load_yaml", "serde_plain"]

# YAML aliases share one node however often they are used; expanded into a document
# (as Moltis's serde_yaml and our normalization do), a few lines of anchors can name
# billions of values. Moltis's own config is a few hundred values.
MAX_YAML_NODES = 1_000_000

# At most this many paths per kind of note (a file of a million unquoted numbers in
# text fields needs one warning of each kind, not a million)
MAX_NOTES = 100

Path = tuple[str, ...]
# How the schema reads the value at a path: its kind ("text", "refused": a text field
# serde reads through its buffered `Content`, "float", "table": a typed table or array,
# None: anything else, or a place the schema does not type) and whether serde reads it
# buffered (`ledger.schema.introspect.value_reading`)
Reading = Callable[[Path], tuple[str | None, bool]]


class YamlNotes:
    """What reading a YAML file changed of its literal values, by path (`check`)."""

    __slots__ = ("refused_keys", "refused_texts", "texts")

    def __init__(self) -> None:
        self.texts: list[Path] = []  # numbers and bools read as text, as serde reads them
        self.refused_texts: list[Path] = []  # ...where Moltis then refuses the number
        self.refused_keys: list[Path] = []  # number keys of a buffered table (refused)

    def add(self, kind: list[Path], path: Path) -> None:
        if len(kind) < MAX_NOTES:
            kind.append(path)

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True,
          "false": False, "False": False, "FALSE": False}
_RADIX = (("0x", 16, "0123456789abcdefABCDEF"), ("0o", 8, "01234567"), ("0b", 2, "01"))
_INT_RANGE = (-(1 << 127), (1 << 128) - 1)  # u64, i64, u128, i128: serde_yaml's tries


@functools.cache
def _decimal() -> re.Pattern[str]:
    return re.compile(r"-?[0-9]+")


@functools.cache
def _rust_float() -> re.Pattern[str]:
    # Rust's f64 grammar without inf/nan (never finite): 1, 1., .5, 1e5, -1.5E-3
    return re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _digits_but_not_number(text: str) -> bool:
    body = text[1:] if text[:1] in ("+", "-") else text
    return len(body) > 1 and body[0] == "0" and body.isascii() and body.isdigit()


def _unplussed(text: str) -> str | None:
    """`text` without one leading `+` (None when a second sign follows it)."""
    if not text.startswith("+"):
        return text
    return None if text[1:2] in ("+", "-") else text[1:]


def _integer(text: str) -> int | None:
    body = _unplussed(text)
    if body is None:
        return None
    sign, digits = (-1, body[1:]) if body.startswith("-") else (1, body)
    if len(digits) > 132:  # longer than any u128 in any radix (and than int()'s limit)
        return None
    for prefix, radix, allowed in _RADIX:
        if digits.startswith(prefix):
            rest = digits[2:]
            if rest and all(c in allowed for c in rest):
                return _in_range(sign * int(rest, radix))
            return None
    if _digits_but_not_number(text) or not _decimal().fullmatch(body):
        return None
    return _in_range(int(body))


def _in_range(value: int) -> int | None:
    return value if _INT_RANGE[0] <= value <= _INT_RANGE[1] else None


def _float(text: str) -> float | None:
    body = _unplussed(text)
    if body is None:
        return None
    if body in (".inf", ".Inf", ".INF"):
        return math.inf
    if text in ("-.inf", "-.Inf", "-.INF"):
        return -math.inf
    if text in (".nan", ".NaN", ".NAN"):
        return math.nan
    if not _rust_float().fullmatch(body):
        return None
    value = float(body)
    return value if math.isfinite(value) else None


def serde_plain(text: str) -> Any:
    """A plain scalar's value as serde_yaml 0.9.34 reads it (`visit_untagged_scalar`)."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    number: int | float | None = _integer(text)
    if number is None and not _digits_but_not_number(text):
        number = _float(text)
    return text if number is None else number


class _Plain:
    """A plain scalar: its untagged reading (`value`, `serde_plain`) and its text. Equal
    to, and hashed as, its text, so a key given twice (`1:` and `"1":`) is still a
    duplicate; shown as its text (in ruamel's messages)."""

    __slots__ = ("text", "value")

    def __init__(self, value: Any, text: str) -> None:
        self.value, self.text = value, text

    def __eq__(self, other: object) -> bool:
        return self.text == (other.text if isinstance(other, _Plain) else other)

    def __hash__(self) -> int:
        return hash(self.text)

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _as_serde_reads(construct: Any) -> Any:
    """A constructor for a core scalar tag: a plain scalar as a `_Plain`; any other
    (quoted, block, explicitly tagged: `_Composer` marks those) as ruamel builds it."""
    def build(self: Any, node: Any) -> Any:
        if node.style is not None:
            return construct(self, node)
        return _Plain(serde_plain(node.value), node.value)
    return build


@functools.cache
def _composer() -> Any:
    from ruamel.yaml.composer import Composer

    class MoltisYamlComposer(Composer):
        def compose_scalar_node(self, anchor: Any) -> Any:
            tag = self.parser.peek_event().ctag
            node = super().compose_scalar_node(anchor)
            if tag is not None and str(tag) != "!" and node.style is None:
                node.style = "!"  # explicitly tagged: serde reads it as its tag says
            return node

    return MoltisYamlComposer


@functools.cache
def _constructor() -> type:
    from ruamel.yaml.constructor import SafeConstructor

    class MoltisYamlConstructor(SafeConstructor):
        def flatten_mapping(self, node: Any) -> None:
            return None  # `<<` is not merged

    for tag in ("merge", "value"):  # `<<` and `=` are text to serde_yaml
        MoltisYamlConstructor.add_constructor(f"tag:yaml.org,2002:{tag}",
                                              SafeConstructor.construct_yaml_str)
    for tag in ("str", "null", "bool", "int", "float", "timestamp"):
        construct = (SafeConstructor.construct_yaml_str if tag == "timestamp"
                     else SafeConstructor.yaml_constructors[f"tag:yaml.org,2002:{tag}"])
        MoltisYamlConstructor.add_constructor(f"tag:yaml.org,2002:{tag}",
                                              _as_serde_reads(construct))
    return MoltisYamlConstructor


def load_yaml(text: str, where: str, reading: Reading | None = None,
              notes: YamlNotes | None = None) -> Any:
    """The document of a YAML file's text, each place read as `reading` says the schema
    reads it (None: as free-form values); `notes` gets what that changed. ParseError
    names the file and line, never a value (a duplicate key's values may be secrets)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = _composer()
    yaml.Constructor = _constructor()
    try:
        parsed = yaml.load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        if isinstance(err, DuplicateKeyError):  # its text quotes both values
            found = re.match(r'found duplicate key "([^"]*)" with value', err.problem or "")
            key = f' "{found.group(1)}"' if found else ""
            problem = f"duplicate key{key}: given twice in one table"
        else:
            problem = getattr(err, "problem", None) or type(err).__name__
        raise ParseError(f"{where}: invalid YAML{at}: {problem}") from None
    except (ValueError, TypeError, KeyError):  # an explicit tag its value does not fit
        raise ParseError(f"{where}: invalid YAML: a value does not fit its explicit tag "
                         "(!!int, !!float, !!bool, !!binary ...)") from None
    if parsed is None:
        return {}
    return _settle(parsed, where, reading, YamlNotes() if notes is None else notes)


def _settle(parsed: Any, where: str, reading: Reading | None, notes: YamlNotes) -> Any:
    """The document as plain values: a copy in which every alias is its own value (one
    place may take a scalar's text where another takes its number), each `_Plain` read
    as its place says (`_read`), a `_Plain` key its text. Paths are followed only where
    `reading` says the schema types a table (memory grows with the document, not with
    its depth), asked once per key of such a table and once per array. Refuses more
    than MAX_YAML_NODES values once aliases are expanded."""
    budget = MAX_YAML_NODES
    root = [parsed]
    typed = reading is not None
    stack: list[tuple[Any, Any, Path | None, str | None]] = [
        (root, 0, () if typed else None, "table" if typed else None)]
    while stack:  # no recursion: a deep document is refused where it is stored
        holder, slot, path, kind = stack.pop()
        budget -= 1
        if budget < 0:
            raise ParseError(f"{where}: more than {MAX_YAML_NODES:,} values once YAML aliases "
                             "are expanded; this is not a configuration file")
        item = holder[slot]
        if isinstance(item, _Plain):
            holder[slot] = _read(item, kind, path, notes)
            continue
        if not isinstance(item, dict | list):
            continue
        inner = path if kind == "table" else None
        if isinstance(item, dict):
            holder[slot] = table = {}
            for given, value in item.items():
                key = given.text if isinstance(given, _Plain) else given
                table[key] = value
                below, how = None, None
                if inner is not None and reading is not None and isinstance(key, str):
                    below = (*inner, key)
                    how, buffered = reading(below)
                    if buffered and isinstance(given, _Plain) and not isinstance(
                            given.value, str):
                        notes.add(notes.refused_keys, below)  # Content keeps the number
                stack.append((table, key, below, how))
        else:
            holder[slot] = items = list(item)
            how = reading((*inner, "0"))[0] if inner is not None and reading else None
            stack.extend((items, i, None if inner is None else (*inner, str(i)), how)
                         for i in range(len(items)))
    return root[0]


def _read(item: _Plain, kind: str | None, path: Path | None, notes: YamlNotes) -> Any:
    """A plain scalar as serde reads it at a place of `kind` (see `Reading`)."""
    if item.value is None or kind not in ("text", "refused", "float"):
        return item.value  # (a null is none for an Option, and left out: `nulls`)
    if kind == "float":  # `deserialize_f64`: parse_f64 alone; otherwise refused (text)
        number = _float(item.text)
        return item.text if number is None else number
    if path is not None and not isinstance(item.value, str):
        notes.add(notes.texts if kind == "text" else notes.refused_texts, path)
    return item.text
