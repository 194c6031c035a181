"""Reading Moltis's `provider_keys.json`: either shape, normalized into one document."""

from __future__ import annotations

from pathlib import Path

from ledger.core.document import Doc, normalize_document
from ledger.files.documents import parse_document
from ledger.files.safe_io import read_file
from projections.provider_view import normalize_keys_document

__all__ = ["META_KEYS", "parse_keys", "read_keys_file"]

# ledger meta: the prints of the leaves last imported from provider_keys.json (written
# by ledger.ops.migrate); once present, the file has been taken into the ledger
META_KEYS = "import.keys.leaves"


def read_keys_file(path: Path) -> Doc:
    """The key file as one normalized document ({} when missing)."""
    data = read_file(path)
    return {} if data is None else parse_keys(data, str(path))


def parse_keys(data: bytes, where: str) -> Doc:
    parsed = parse_document(data, where, "json")
    return normalize_document(normalize_keys_document(parsed, where), where)
