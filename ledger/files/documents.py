"""A config file's bytes as a document, read as Moltis reads them: TOML, YAML (as
serde_yaml 0.9 reads into Moltis's types) or JSON by the file's suffix, an object at the
top, `null`s left out."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

from ledger.errors import ParseError

__all__ = ["MAX_YAML_NODES", "ConfigFormat", "ReadNotes", "config_format", "parse_document"]

ConfigFormat = Literal["toml", "yaml", "json"]

# YAML aliases share one node however often they are used; expanded into a document
# (as Moltis's serde_yaml and our normalization do), a few lines of anchors can name
# billions of values. Moltis's own config is a few hundred values.
MAX_YAML_NODES = 1_000_000


class ReadNotes:
    """Where reading a config file made its document differ from the file's literal
    values, by path (list items by index), as Moltis reads the file: `check --file`
    reports them. (A plain class: `get` reads the config file as it starts, and
    dataclasses costs milliseconds to import, figure i16a.)"""

    __slots__ = ("dates", "non_finite", "nulls", "plain", "texts")

    def __init__(self) -> None:
        # `null`s left out (`_without_nulls`)
        self.nulls: list[tuple[str, ...]] = []
        # each plain YAML number or bool's text (`_settle`): a reader of Moltis's config
        # gives it to the fields that take text (`ledger.stores.config_file`)
        self.plain: dict[tuple[str, ...], str] = {}
        # the paths that got their text
        self.texts: list[tuple[str, ...]] = []
        # inf and nan left out of a free-form value or an unknown key
        self.non_finite: list[tuple[str, ...]] = []
        # TOML dates and times, kept as their text (`normalize_value`)
        self.dates: list[tuple[str, ...]] = []


def config_format(path: Path) -> ConfigFormat:
    """The format of a config file, by its suffix as Moltis decides it (TOML otherwise)."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "json" if suffix == ".json" else "toml"


class _Plain:
    """A plain (unquoted) YAML scalar that YAML reads as a number or a bool, with its
    text: serde_yaml gives a string field (and any map key) the scalar's text, so
    `theme: 0x1F` is "0x1F" for Moltis (de.rs `deserialize_str`, review r13). Equal to,
    and hashed as, its text, so a key given twice (`1:` and `"1":`) is still the duplicate
    serde_yaml refuses."""

    __slots__ = ("text", "value")

    def __init__(self, value: Any, text: str) -> None:
        self.value, self.text = value, text

    def __eq__(self, other: object) -> bool:
        return self.text == (other.text if isinstance(other, _Plain) else other)

    def __hash__(self) -> int:
        return hash(self.text)


def _keeping_text(construct: Any) -> Any:
    def build(self: Any, node: Any) -> Any:
        value = construct(self, node)
        return _Plain(value, node.value) if node.style is None else value
    return build


@functools.cache
def _moltis_yaml_constructor() -> type:
    """ruamel's safe constructor made to read as serde_yaml 0.9 (what Moltis parses
    YAML with) reads into its types, review r13: a timestamp-looking scalar is its text
    (serde_yaml has no timestamp type: `2024-01-01 10:00:00` was imported as
    "2024-01-01T10:00:00"), a merge key `<<` is a key like any other (serde_yaml's
    `from_str` does not merge: Moltis sees an unknown key `<<`, which `check` reports,
    and not the merged values the ledger imported), and a plain number or bool keeps
    its text (`_Plain`, settled by `_settle`)."""
    from ruamel.yaml.constructor import SafeConstructor

    class MoltisYamlConstructor(SafeConstructor):
        def flatten_mapping(self, node: Any) -> None:
            return None  # `<<` is not merged

    for tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:timestamp"):
        MoltisYamlConstructor.add_constructor(tag, SafeConstructor.construct_yaml_str)
    for tag, construct in (("bool", SafeConstructor.construct_yaml_bool),
                           ("int", SafeConstructor.construct_yaml_int),
                           ("float", SafeConstructor.construct_yaml_float)):
        MoltisYamlConstructor.add_constructor(f"tag:yaml.org,2002:{tag}",
                                              _keeping_text(construct))
    return MoltisYamlConstructor


def _load_yaml(text: str, where: str, texts: dict[tuple[str, ...], str] | None) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _moltis_yaml_constructor()
    try:
        parsed = yaml.load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ParseError(f"{where}: invalid YAML{at}: {problem}") from None
    return {} if parsed is None else _settle(parsed, where, texts)


def _settle(parsed: Any, where: str, texts: dict[tuple[str, ...], str] | None) -> Any:
    """The YAML document as plain values: a copy in which every alias is its own value
    (one place may take a scalar's text where another takes its number), a `_Plain` key
    is its text and a `_Plain` value its number or bool, whose text goes to `texts` by
    path (list items by index); `ledger.stores.config_file` gives it to a field that
    takes text. Refuses more than MAX_YAML_NODES values once aliases are expanded."""
    budget = MAX_YAML_NODES
    root = [parsed]
    stack: list[tuple[Any, Any, tuple[str, ...]]] = [(root, 0, ())]
    while stack:  # no recursion: a deep document is refused where it is stored
        holder, slot, path = stack.pop()
        budget -= 1
        if budget < 0:
            raise ParseError(f"{where}: more than {MAX_YAML_NODES:,} values once YAML aliases "
                             "are expanded; this is not a configuration file")
        item = holder[slot]
        if isinstance(item, _Plain):
            holder[slot] = item.value
            if texts is not None:
                texts[path] = item.text
        elif isinstance(item, dict):
            holder[slot] = table = {}
            for given, value in item.items():
                key = given.text if isinstance(given, _Plain) else given
                table[key] = value
                stack.append((table, key, (*path, str(key))))
        elif isinstance(item, list):
            holder[slot] = items = list(item)
            stack.extend((items, i, (*path, str(i))) for i in range(len(items)))
    return root[0]


def parse_document(data: bytes, where: str, fmt: str,
                   notes: ReadNotes | None = None) -> dict[str, Any]:
    """A TOML, YAML or JSON document (an object) from a file's bytes; ParseError names
    the file and, when the parser says, the line. Empty text is an empty document. The
    nulls left out and the text of each plain YAML number or bool go to `notes`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParseError(f"{where}: not UTF-8 text (bad byte at offset {err.start})") from None
    import tomllib  # only the commands that read a file pay for the parser

    try:
        if fmt == "json":
            parsed = json.loads(text) if text.strip() else {}
        elif fmt == "yaml":
            parsed = _load_yaml(text, where, None if notes is None else notes.plain)
        else:
            parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ParseError(f"{where}: invalid TOML: {err}") from None
    except json.JSONDecodeError as err:
        raise ParseError(f"{where}: invalid JSON at line {err.lineno}, column {err.colno}: "
                         f"{err.msg}") from None
    except RecursionError:
        raise ParseError(f"{where}: nested too deeply") from None
    if not isinstance(parsed, dict):
        raise ParseError(f"{where}: the document must be a {fmt.upper()} object")
    return _without_nulls(parsed, [] if notes is None else notes.nulls) if fmt != "toml" \
        else parsed


def _without_nulls(table: dict[str, Any], nulls: list[tuple[str, ...]]) -> dict[str, Any]:
    """A JSON or YAML document with its `null`s (YAML `~`, an empty value) left out: for
    an `Option` field Moltis reads one as None, the key not set, which is what a TOML
    file (which has no null) says by leaving the key out (review r13: refused, "unsupported
    value of type NoneType"). For any other field Moltis refuses the file; their paths go
    to `nulls`. Nulls inside arrays are kept, and refused where stored."""
    out: dict[str, Any] = {}
    stack: list[tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]] = [(table, out, ())]
    while stack:  # no recursion: a deep document is refused where it is stored, not here
        src, dst, at = stack.pop()
        for key, value in src.items():
            if value is None:
                nulls.append((*at, str(key)))
                continue
            if isinstance(value, dict):
                dst[key] = {}
                stack.append((value, dst[key], (*at, str(key))))
            else:
                dst[key] = value
    return out
