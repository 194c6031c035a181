"""A config file's bytes as a document, read as Moltis reads them: TOML, YAML (as
serde_yaml 0.9 reads into Moltis's types) or JSON by the file's suffix, an object at the
top, `null`s left out."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from ledger.errors import ParseError
from ledger.files.read_notes import Reading, ReadNotes

__all__ = ["ConfigFormat", "config_format", "parse_document"]

ConfigFormat = Literal["toml", "yaml", "json"]


def config_format(path: Path) -> ConfigFormat:
    """The format of a config file, by its suffix as Moltis decides it (TOML otherwise)."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "json" if suffix == ".json" else "toml"


def parse_document(data: bytes, where: str, fmt: str,
                   notes: ReadNotes | None = None,
                   reading: Reading | None = None) -> dict[str, Any]:
    """A TOML, YAML or JSON document (an object) from a file's bytes; ParseError names
    the file and, when the parser says, the line. Empty text is an empty document. A
    YAML file's places are read as `reading` says the schema reads them (see
    `ledger.files.yaml_read`); the nulls left out and what the reading changed go to
    `notes`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParseError(f"{where}: not UTF-8 text (bad byte at offset {err.start})") from None
    import tomllib  # only the commands that read a file pay for the parser

    try:
        if fmt == "json":
            parsed = json.loads(text) if text.strip() else {}
        elif fmt == "yaml":
            # here, not at the top: only a YAML file loads ruamel and the serde rules
            from ledger.files.yaml_read import load_yaml

            parsed = load_yaml(text, where, reading, notes)
        else:
            parsed = tomllib.loads(text, parse_float=_toml_float(where, notes))
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


def _toml_float(where: str, notes: ReadNotes | None) -> Any:
    """tomllib's float reader, refusing a positive number too large for a float, as
    Moltis's toml crate does (tomllib would read `1e400` as inf; `-1e400` is -inf to
    both); `inf` and `nan` go on, and `notes` says one was read
    (`ledger.stores.config_file` decides where they go)."""
    def read(text: str) -> float:
        value = float(text)
        if value == math.inf and text.lstrip("+") != "inf":  # toml_edit refuses +inf only
            raise ParseError(f"{where}: invalid TOML: {text} is too large for a number "
                             "(Moltis refuses it too)")
        if notes is not None and not math.isfinite(value):
            notes.non_finite_read = True
        return value
    return read


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
