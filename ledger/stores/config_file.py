"""Reading Moltis's config file: `moltis.toml`, `moltis.yaml`/`.yml` or `moltis.json` as a
raw document. Light on purpose (the schema only for a file that needs it): every CLI
command and `open_store()` read the file once to find the backend, before anything else
is loaded."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.core.document import Doc, normalize_document
from ledger.core.keypaths import KeyPath, format_path
from ledger.errors import ParseError
from ledger.files.documents import config_format, parse_document
from ledger.files.read_notes import ReadNotes
from ledger.files.safe_io import read_file

__all__ = ["parse_config", "read_config", "read_config_file"]


def read_config_file(path: Path, notes: ReadNotes | None = None) -> Doc:
    """`moltis.toml`, `moltis.yaml`/`.yml` or `moltis.json` as a raw document ({} when the
    file is missing): the one config-file reader of the file store, `migrate` and
    `check --file` (which passes `notes`, see `parse_config`)."""
    return parse_config(path, read_file(path), notes)


def read_config(path: Path) -> tuple[bytes | None, Doc]:
    """The file's bytes (None when it is missing) and the document parsed from exactly
    those bytes: what an import records the digest of (`ledger.ops.file_digest`)."""
    data = read_file(path)
    return data, parse_config(path, data)


def parse_config(path: Path, data: bytes | None, notes: ReadNotes | None = None) -> Doc:
    """The raw document of a config file's bytes ({} for a missing file), as Moltis
    reads the file where the ledger can hold that: a YAML value is read as serde reads
    it for its field (`theme: 0x1F` is "0x1F": `ledger.files.yaml_read`); an inf or nan
    of a TOML or YAML file is left out of a free-form value (which Moltis reads as JSON,
    where it is null: the ledger has no null either, as for a YAML `~`) and of an
    unknown key (which Moltis ignores). `notes` gets where (`check`)."""
    if data is None:
        return {}
    wanted, notes = notes is not None, ReadNotes() if notes is None else notes
    where = str(path)
    fmt = config_format(path)
    doc = parse_document(data, where, fmt, notes, _reading)
    if wanted and fmt == "toml":  # only `check` asks: other readers skip the walk
        notes.dates = [at for _, _, at, value in _scalars(doc)
                       if isinstance(value, dt.date | dt.time)]
    # the readers say when they read an inf or nan (JSON's NaN and Infinity are left to
    # the document's normalization, which refuses them: so does Moltis's serde_json)
    if notes.non_finite_read:
        _leave_out_non_finite(doc, where, notes)
    return normalize_document(doc, where)


def _reading(path: KeyPath) -> tuple[str | None, bool]:
    """How the schema reads a YAML file's value at `path` (`ledger.files.yaml_read`)."""
    # here, not at the top: only a YAML file with a table loads the schema
    from ledger.schema.introspect import value_reading

    return value_reading(path)


def _scalars(doc: Doc) -> Iterator[tuple[Any, Any, KeyPath, Any]]:
    """Every value of `doc` that is not a table or an array: its table or array, its key
    there, its path (items by index) and itself."""
    stack: list[tuple[Any, KeyPath]] = [(doc, ())]
    while stack:
        node, at = stack.pop()
        for key, value in (node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(value, dict | list):
                stack.append((value, (*at, str(key))))
            else:
                yield node, key, (*at, str(key)), value


def _leave_out_non_finite(doc: Doc, where: str, notes: ReadNotes) -> None:
    """Leave each inf or nan out where Moltis reads it as null or ignores it (a value or
    an array item of an unknown key, a value of a free-form table); refuse it where Moltis
    would take it (a number field: the ledger stores JSON, which has neither) and in a
    free-form array (Moltis keeps a null there, which the ledger cannot)."""
    # here, not at the top: only a file that spells inf or nan loads the schema
    from ledger.schema.introspect import is_free_form_path, node_at

    found = [(node, key, path, value) for node, key, path, value in _scalars(doc)
             if isinstance(value, float) and not math.isfinite(value)]
    items: list[tuple[list[Any], int]] = []
    for node, key, path, value in found:
        if node_at(path) is not None:
            raise ParseError(f"{where}: {format_path(path)}: {value}: the ledger stores "
                             "values as JSON, which has no inf or nan; give a finite number")
        if isinstance(node, list) and is_free_form_path(path):
            raise ParseError(f"{where}: {format_path(path)}: {value} in an array, which "
                             "Moltis reads as null: the ledger stores values as JSON, which "
                             "has no inf, nan or null; remove it or give a finite number")
        if isinstance(node, list):
            items.append((node, key))
        else:
            del node[key]
        notes.add(notes.non_finite, path)
    for array, index in sorted(items, key=lambda item: -item[1]):
        del array[index]  # the last first: an earlier item's index stays right
