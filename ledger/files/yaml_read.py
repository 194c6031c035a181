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

So every plain number, bool or null is built as a `_Plain` holding its value and its
text; `_settle` then makes the document plain values: a key gets the text, a value its
value, and the text of a value in a table the schema types is kept by path for the
reader that knows which fields take text (`ledger.stores.config_file`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

from ledger.errors import ParseError

__all__ = ["MAX_YAML_NODES", "load_yaml", "serde_plain"]

# YAML aliases share one node however often they are used; expanded into a document
# (as Moltis's serde_yaml and our normalization do), a few lines of anchors can name
# billions of values. Moltis's own config is a few hundred values.
MAX_YAML_NODES = 1_000_000

Path = tuple[str, ...]

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


def _integer(text: str) -> int | None:
    body = text
    if body.startswith("+"):
        body = body[1:]
        if body[:1] in ("+", "-"):
            return None
    sign, digits = (-1, body[1:]) if body.startswith("-") else (1, body)
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
    body = text
    if body.startswith("+"):
        body = body[1:]
        if body[:1] in ("+", "-"):
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
    """A plain scalar serde_yaml reads as a null, a bool or a number, with its text.
    Equal to, and hashed as, its text, so a key given twice (`1:` and `"1":`) is still
    the duplicate serde_yaml refuses."""

    __slots__ = ("text", "value")

    def __init__(self, value: Any, text: str) -> None:
        self.value, self.text = value, text

    def __eq__(self, other: object) -> bool:
        return self.text == (other.text if isinstance(other, _Plain) else other)

    def __hash__(self) -> int:
        return hash(self.text)


def _as_serde_reads(construct: Any) -> Any:
    """A constructor for a core scalar tag: a plain scalar as serde_yaml reads it, any
    other (quoted, block, explicitly tagged and quoted) as ruamel builds it."""
    def build(self: Any, node: Any) -> Any:
        if node.style is not None:
            return construct(self, node)
        value = serde_plain(node.value)
        return value if isinstance(value, str) else _Plain(value, node.value)
    return build


@functools.cache
def _constructor() -> type:
    from ruamel.yaml.constructor import SafeConstructor

    class MoltisYamlConstructor(SafeConstructor):
        def flatten_mapping(self, node: Any) -> None:
            return None  # `<<` is not merged

    MoltisYamlConstructor.add_constructor("tag:yaml.org,2002:merge",
                                          SafeConstructor.construct_yaml_str)
    for tag in ("str", "null", "bool", "int", "float", "timestamp"):
        construct = (SafeConstructor.construct_yaml_str if tag == "timestamp"
                     else SafeConstructor.yaml_constructors[f"tag:yaml.org,2002:{tag}"])
        MoltisYamlConstructor.add_constructor(f"tag:yaml.org,2002:{tag}",
                                              _as_serde_reads(construct))
    return MoltisYamlConstructor


def load_yaml(text: str, where: str, plain: dict[Path, str] | None,
              typed: Callable[[Path], bool] | None) -> Any:
    """The document of a YAML file's text; `plain` gets the text of each plain number or
    bool in a table `typed(path)` says the schema types. ParseError names the file and
    line, never a value (a duplicate key's values may be secrets)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _constructor()
    try:
        parsed = yaml.load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        if isinstance(err, DuplicateKeyError):  # its text quotes both values
            found = re.match(r'found duplicate key "([^"]*)" with value', err.problem or "")
            key = f' "{found.group(1)}"' if found else ""
            problem = f"duplicate key{key}: given twice in one table (Moltis refuses that too)"
        else:
            problem = getattr(err, "problem", None) or type(err).__name__
        raise ParseError(f"{where}: invalid YAML{at}: {problem}") from None
    return {} if parsed is None else _settle(parsed, where, plain, typed)


def _settle(parsed: Any, where: str, plain: dict[Path, str] | None,
            typed: Callable[[Path], bool] | None) -> Any:
    """The document as plain values: a copy in which every alias is its own value (one
    place may take a scalar's text where another takes its number), a `_Plain` key is
    its text and a `_Plain` value its value. Paths are followed only through tables
    `typed` accepts (memory grows with the document, not with its depth), and only
    there does a value's text go to `plain`. Refuses more than MAX_YAML_NODES values
    once aliases are expanded."""
    budget = MAX_YAML_NODES
    root = [parsed]
    track = plain is not None and typed is not None
    stack: list[tuple[Any, Any, Path | None]] = [(root, 0, () if track else None)]
    while stack:  # no recursion: a deep document is refused where it is stored
        holder, slot, path = stack.pop()
        budget -= 1
        if budget < 0:
            raise ParseError(f"{where}: more than {MAX_YAML_NODES:,} values once YAML aliases "
                             "are expanded; this is not a configuration file")
        item = holder[slot]
        if isinstance(item, _Plain):
            holder[slot] = item.value
            if path is not None and plain is not None and item.value is not None:
                plain[path] = item.text  # (a null is none for an Option: `nulls`)
            continue
        if not isinstance(item, dict | list):
            continue
        inner = path if path is not None and typed is not None and typed(path) else None
        if isinstance(item, dict):
            holder[slot] = table = {}
            for given, value in item.items():
                key = given.text if isinstance(given, _Plain) else given
                table[key] = value
                below = (*inner, key) if inner is not None and isinstance(key, str) else None
                stack.append((table, key, below))
        else:
            holder[slot] = items = list(item)
            stack.extend((items, i, None if inner is None else (*inner, str(i)))
                         for i in range(len(items)))
    return root[0]
