"""The head high-water mark: the highest head (seq, hash) a holder of the ledger key
has seen, kept beside the ledger key and MAC'd with it. The database and the head
mirror live in the data dir; an older genuine copy of either put back there (a replay:
its old MAC and signature still check) is refused because its head is below the mark,
or is not the event the mark names at that seq, rather than served as the newest state.
Someone who can rewrite the mark can also read the ledger key beside it, so the mark
adds no weaker link.

Who raises it: the mirror after each write, and every key holder's ledger when it
writes a checkpoint signature (its first append, every CHECKPOINT_EVERY events or
CHECKPOINT_SECS, close, sign-head); never per append (an overwrite of a small file,
~10 us, but a read-compare-write too). The window this leaves: a copy taken after the
last raise is put back unnoticed (at most one checkpoint interval of events, and
none once the writer closed). `sign-head --adopt` and `restore` are the operator's
acts that move the mark back to an older head.

What remains: the mark belongs to one ledger per key directory: its ledger_id and,
for SQLite, the path it is opened by, so two ledgers sharing a key
directory, or a ledger and a copy `import-bundle` made of it elsewhere, protect only
the last one written, and the other is read without the mark (review r16: such a copy
was refused as "rewritten" once the original was written again). The location, not
the copy's history id: the history id is in the database, so an older copy put back
in the ledger's place (the one a restore keeps in backups/) would have carried its
own past it (review r18); an attacker
who can write the key directory can rewind both (but then holds the key anyway)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from ledger.engine.sealed_files import open_body, seal_body
from ledger.engine.vault import KeySource
from ledger.errors import LedgerError, ParseError
from ledger.files.safe_io import overwrite_private, read_file

__all__ = ["MARK_NAME", "OLDER_REPAIR", "HeadMark", "head_mark_problem", "mark_location",
           "mark_path",
           "older_than_mark", "raise_mark", "read_mark", "unreadable_mark", "write_mark"]

MARK_NAME: Final = "ledger-head.hwm"
FORMAT: Final = "moltis-config-ledger head mark v1"
OLDER_REPAIR: Final = (
    "Restore the newest backup (`moltis-ledger restore FILE`), or, if this older ledger "
    "is the one to keep, accept it with `moltis-ledger sign-head --adopt` (it runs the "
    "full verify first, then moves the head mark back to this head)")


# a Struct, not a dataclass: `get` starts without dataclasses and inspect (issue 16)
class HeadMark(msgspec.Struct, frozen=True):
    ledger_id: str
    seq: int
    hash: str
    location: str = ""  # `mark_location` of the ledger; "" in marks written before it


@functools.lru_cache(maxsize=64)  # once per ledger a process opens: every mirror write asks
def mark_location(backend_name: str, location: str) -> str:
    """Where a ledger is, as its mark records it: for SQLite its directory's real path
    and the file's own name, the rule writes follow (`safe_io._written_file`): one data
    dir reached by two spellings (a symlinked ~/.moltis) is one place (review r20), and
    a link put at moltis.db, to an older copy elsewhere, is not followed away from it
    (review r19); "" for PostgreSQL, whose DSN can name one database many ways: its mark
    applies to every ledger of that id, as before locations were recorded."""
    if backend_name != "sqlite":
        return ""
    path = os.path.abspath(location)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def mark_path(keys: KeySource) -> Path:
    """Beside the ledger key file (also when the key comes from the environment)."""
    return keys.key_file.with_name(MARK_NAME)


def write_mark(path: Path, key: bytes, mark: HeadMark) -> None:
    """Overwrite the mark in place (a few dozen bytes: one page), never through a link,
    0600 from the first byte, and only in a directory nobody else can plant files in
    (`overwrite_private` checks it, as for every other write): the key's directory is
    configurable, and a mark in a shared directory could be swapped by another user."""
    body = json.dumps({"format": FORMAT, "ledger_id": mark.ledger_id, "seq": mark.seq,
                       "hash": mark.hash, "location": mark.location}, sort_keys=True)
    overwrite_private(path, seal_body(key, body), "the head mark")


def read_mark(path: Path, key: bytes) -> HeadMark | None:
    """The mark, None when there is none; ParseError when it exists but its MAC fails."""
    data = read_file(path, "head mark")
    if data is None:
        return None
    try:
        body = open_body(data, key)
        doc = json.loads(body)
        if doc.get("format") != FORMAT:
            raise ValueError("not a head mark")
        return HeadMark(str(doc["ledger_id"]), int(doc["seq"]), str(doc["hash"]),
                        str(doc.get("location", "")))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ParseError(f"{path}: the head mark cannot be used: {err}") from None


def raise_mark(path: Path, key: bytes, mark: HeadMark, *, lower: bool = False) -> None:
    """Raise the mark to `mark` (never lower it, unless `lower`: an operator accepted an
    older head). A damaged mark (only the key's owner can write it) is written again;
    a mark for another ledger sharing this key directory is replaced."""
    if not lower:
        try:
            current = read_mark(path, key)
        except ParseError:
            current = None
        if (current is not None and current.ledger_id == mark.ledger_id
                and current.location == mark.location and current.seq >= mark.seq):
            return
    write_mark(path, key, mark)


def marked_ledger(keys: KeySource) -> bytes | None:
    """The ledger id the head mark beside the key names, or None (no key, no mark, or
    one this key does not open)."""
    try:
        key = keys.load(create=False)
        mark = read_mark(mark_path(keys), key) if key is not None else None
    except (LedgerError, OSError):
        return None
    return mark.ledger_id.encode() if mark is not None else None


def older_than_mark(mark: HeadMark | None, ledger_id: str, location: str, head_seq: int,
                    hash_at: Callable[[int], bytes | None]) -> str | None:
    """Why this ledger's head (seq `head_seq`; `hash_at(seq)` reads an event's hash) is
    older than the mark, or None. Only a mark of this ledger (its ledger_id, at this
    location; a mark from before locations were recorded counts everywhere) counts."""
    if mark is None or not ledger_id or mark.ledger_id != ledger_id \
            or (mark.location and mark.location != location):
        return None
    if head_seq < mark.seq:
        return (f"its head is event {head_seq}, but event {mark.seq} of this ledger was "
                "already written and vouched for")
    found = hash_at(mark.seq) if mark.seq else None
    if mark.seq and (found is None or found.hex() != mark.hash):
        return (f"its event {mark.seq} is not the event {mark.seq} this key vouched for "
                f"({mark.hash[:16]}…): the log was replaced or rewritten")
    return None


def unreadable_mark(path: Path, err: Exception) -> str:
    """What a reader says of a mark it cannot use (and so reads without): the file,
    why, what that leaves unchecked, and the fix."""
    why = str(err).removeprefix(f"{path}: ").removeprefix("the head mark cannot be used: ")
    return (f"the head mark {path} cannot be used ({why}): reading without it, so an older "
            "copy of the ledger put back would not be noticed. Check the ledger with "
            "`moltis-ledger verify`, then `moltis-ledger sign-head` writes the mark "
            f"again (remove {path} first if it is not a regular file: it is never written "
            "over)")


def head_mark_problem(keys: KeySource, ledger_id: bytes, location: str, head_seq: int,
                      hash_at: Callable[[int], bytes | None],
                      unreadable: Callable[[str], None] | None = None) -> str | None:
    """Why this ledger's head is older than the mark beside the key (the whole message,
    with the repair), or None: also when nothing here can tell (no key, no mark, a mark
    of another ledger). A mark that is there but cannot be used (damaged, not a regular
    file, sealed with another key, as after another process's rotation until its next
    checkpoint) is read as none too, never silently: `unreadable` gets what to say
    (`unreadable_mark`). Reads the key and the mark only (no key derivation), so
    opening a ledger for `get` stays cheap."""
    if not ledger_id:
        return None
    try:
        key = keys.load(create=False)
    except (LedgerError, OSError):
        return None  # the key's own error is the vault's to report
    path = mark_path(keys)
    try:
        mark = read_mark(path, key) if key is not None else None
    except (LedgerError, OSError) as err:
        if unreadable is not None:
            unreadable(unreadable_mark(path, err))
        return None
    problem = older_than_mark(mark, ledger_id.decode(), location, head_seq, hash_at)
    if problem is None or mark is None:
        return None
    what = ("older than one this key has seen (a copy was put back?)" if head_seq < mark.seq
            else "not the history this key has seen (an older copy put back and written "
            "on, or the log rewritten)")
    return f"this ledger is {what}: {problem} (head mark {path}). {OLDER_REPAIR}"
