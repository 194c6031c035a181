"""Reading Moltis's config file: `moltis.toml`, `moltis.yaml`/`.yml` or `moltis.json` as a
raw document. Light on purpose (the schema only for a YAML file that needs it): every
CLI command and `open_store()` read the file once to find the backend, before anything
else is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.core.document import Doc, normalize_document
from ledger.core.keypaths import KeyPath
from ledger.files.documents import config_format, parse_document
from ledger.files.safe_io import read_file

__all__ = ["parse_config", "read_config", "read_config_file"]


def read_config_file(path: Path, nulls: list[KeyPath] | None = None,
                     texts: list[KeyPath] | None = None) -> Doc:
    """`moltis.toml`, `moltis.yaml`/`.yml` or `moltis.json` as a raw document ({} when the
    file is missing): the one config-file reader of the file store, `migrate` and
    `check --file` (which passes `nulls` and `texts`, see `parse_config`)."""
    return parse_config(path, read_file(path), nulls, texts)


def read_config(path: Path) -> tuple[bytes | None, Doc]:
    """The file's bytes (None when it is missing) and the document parsed from exactly
    those bytes: what an import records the digest of (`ledger.ops.file_digest`)."""
    data = read_file(path)
    return data, parse_config(path, data)


def parse_config(path: Path, data: bytes | None, nulls: list[KeyPath] | None = None,
                 texts: list[KeyPath] | None = None) -> Doc:
    """The raw document of a config file's bytes ({} for a missing file). A plain YAML
    scalar read as a number or bool is its text where the field takes text, as serde
    reads it for Moltis (`theme: 0x1F` is "0x1F"); those paths go to `texts`, the nulls
    left out to `nulls` (`check` reports both)."""
    if data is None:
        return {}
    plain: dict[KeyPath, str] = {}
    doc = parse_document(data, str(path), config_format(path), nulls, plain)
    if plain:
        # here, not at the top: the schema loads only for a YAML file holding such a
        # scalar (every command reads the config file as it starts)
        from ledger.schema.introspect import takes_text

        for at, text in plain.items():
            if takes_text(at):
                _put(doc, at, text)
                if texts is not None:
                    texts.append(at)
    return normalize_document(doc, str(path))


def _put(doc: Doc, path: KeyPath, value: str) -> None:
    node: Any = doc
    for key in path[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(path[-1])] = value
    else:
        node[path[-1]] = value
