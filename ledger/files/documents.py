"""A config file's bytes as a document, read as Moltis reads them: TOML, YAML (as
serde_yaml 0.9 reads into Moltis's types) or JSON by the file's suffix, an object at the
top, `null`s left out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ledger.errors import ParseError
from ledger.files.yaml_read import MAX_YAML_NODES, load_yaml

__all__ = ["MAX_YAML_NODES", "ConfigFormat", "ReadNotes", "config_format", "parse_document"]

ConfigFormat = Literal["toml", "yaml", "json"]


class ReadNotes:
    """Where reading a config file made its document differ from the file's literal
    values, by path (list items by index), as Moltis reads the file: `check --file`
    reports them. (A plain class: `get` reads the config file as it starts, and
    dataclasses costs milliseconds to import, figure i16a.)"""

    __slots__ = ("dates", "non_finite", "nulls", "plain", "refused_texts", "texts")

    def __init__(self) -> None:
        # `null`s left out (`_without_nulls`)
        self.nulls: list[tuple[str, ...]] = []
        # each plain YAML number or bool's text, in the tables the schema types
        # (`ledger.files.yaml_read`): a reader of Moltis's config gives it to the fields
        # that take text (`ledger.stores.config_file`)
        self.plain: dict[tuple[str, ...], str] = {}
        # the paths that got their text, as serde reads them for Moltis...
        self.texts: list[tuple[str, ...]] = []
        # ...or where serde reads the number, which Moltis then refuses (a table serde
        # buffers: a provider entry, an internally tagged enum)
        self.refused_texts: list[tuple[str, ...]] = []
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


def parse_document(data: bytes, where: str, fmt: str,
                   notes: ReadNotes | None = None,
                   typed: Callable[[tuple[str, ...]], bool] | None = None) -> dict[str, Any]:
    """A TOML, YAML or JSON document (an object) from a file's bytes; ParseError names
    the file and, when the parser says, the line. Empty text is an empty document. The
    nulls left out go to `notes`, and so does the text of each plain YAML number or bool
    in a table that `typed(path)` says the schema types (`ledger.files.yaml_read`)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParseError(f"{where}: not UTF-8 text (bad byte at offset {err.start})") from None
    import tomllib  # only the commands that read a file pay for the parser

    try:
        if fmt == "json":
            parsed = json.loads(text) if text.strip() else {}
        elif fmt == "yaml":
            parsed = load_yaml(text, where, None if notes is None else notes.plain, typed)
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
