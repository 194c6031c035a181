"""Reading Moltis's config file: `moltis.toml`, `moltis.yaml`/`.yml` or `moltis.json` as a
raw document. Light on purpose (no schema): every CLI command and `open_store()` read
the file once to find the backend, before anything else is loaded."""

from __future__ import annotations

from pathlib import Path

from ledger.core.document import Doc, normalize_document
from ledger.core.keypaths import KeyPath
from ledger.files.documents import config_format, parse_document
from ledger.files.safe_io import read_file

__all__ = ["parse_config", "read_config", "read_config_file"]


def read_config_file(path: Path, nulls: list[KeyPath] | None = None) -> Doc:
    """`moltis.toml`, `moltis.yaml`/`.yml` or `moltis.json` as a raw document ({} when the
    file is missing): the one config-file reader of the file store, `migrate` and
    `check --file` (which passes `nulls`, see `parse_document`)."""
    return parse_config(path, read_file(path), nulls)


def read_config(path: Path) -> tuple[bytes | None, Doc]:
    """The file's bytes (None when it is missing) and the document parsed from exactly
    those bytes: what an import records the digest of (`ledger.ops.file_digest`)."""
    data = read_file(path)
    return data, parse_config(path, data)


def parse_config(path: Path, data: bytes | None, nulls: list[KeyPath] | None = None) -> Doc:
    """The raw document of a config file's bytes ({} for a missing file)."""
    if data is None:
        return {}
    return normalize_document(parse_document(data, str(path), config_format(path), nulls),
                              str(path))
