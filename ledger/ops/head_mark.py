"""The head high-water mark: the highest head (seq, hash) the head mirror was written
for, kept beside the ledger key and MAC'd with it. The mirror lives in the data dir;
an older genuine mirror copied back there (a replay) is refused because its seq is
below the mark, rather than served as the newest state. Someone who can rewrite the
mark can also read the ledger key beside it, so the mark adds no weaker link.

What remains: the mark belongs to one ledger (its ledger_id) per key directory, so
two ledgers sharing a key directory protect only the last one written; an attacker
who can write the key directory can rewind both (but then holds the key anyway)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ledger.engine.sealed_files import open_body, seal_body
from ledger.engine.vault import KeySource
from ledger.errors import ParseError
from ledger.files.safe_io import check_directory, overwrite_private, read_file

__all__ = ["MARK_NAME", "HeadMark", "mark_path", "read_mark", "write_mark"]

MARK_NAME: Final = "ledger-head.hwm"
FORMAT: Final = "moltis-config-ledger head mark v1"


@dataclass(frozen=True)
class HeadMark:
    ledger_id: str
    seq: int
    hash: str


def mark_path(keys: KeySource) -> Path:
    """Beside the ledger key file (also when the key comes from the environment)."""
    return keys.key_file.with_name(MARK_NAME)


def write_mark(path: Path, key: bytes, mark: HeadMark) -> None:
    """Overwrite the mark in place (a few dozen bytes: one page), never through a link,
    0600 from the first byte, and only in a directory nobody else can plant files in
    (`check_directory`, as for every other write): the key's directory is configurable,
    and a mark in a shared directory could be swapped by another user."""
    check_directory(path.parent)
    body = json.dumps({"format": FORMAT, "ledger_id": mark.ledger_id, "seq": mark.seq,
                       "hash": mark.hash}, sort_keys=True)
    overwrite_private(path, seal_body(key, body), "the head mark")


def read_mark(path: Path, key: bytes) -> HeadMark | None:
    """The mark, None when there is none; ParseError when it exists but its MAC fails."""
    data = read_file(path)
    if data is None:
        return None
    try:
        body = open_body(data, key)
        doc = json.loads(body)
        if doc.get("format") != FORMAT:
            raise ValueError("not a head mark")
        return HeadMark(str(doc["ledger_id"]), int(doc["seq"]), str(doc["hash"]))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ParseError(f"{path}: the head mark cannot be used: {err}") from None
