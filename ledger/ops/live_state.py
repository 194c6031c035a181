"""One state of a live ledger, read in pieces while writers run (a bundle, a backup, a
copy to another backend).

The pieces are separate reads: the head, the meta rows, the events, the snapshots and
the sealed secret rows. Events are never rewritten, so reading them up to a head read
first is safe; the rest is not. A writer committing in between moves the head MAC past
that head (review r18); a shred after it leaves a secret row without its sealed value
and marked shredded at an event the copy lacks; a key rotation re-seals the secret rows
and snapshots and replaces the key check, so a copy could pair one key's check with the
other key's rows, and no key opens its secrets (review r25). The readers here tell
each of these apart, so the caller reads again, rather than writing a copy that
verifies yet fails, or does not open, once imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ledger.backends.base import Backend, Head, SecretRow
from ledger.engine.integrity_keys import (
    HEAD_MAC,
    HEAD_SIGNATURE,
    HISTORY_ID,
    HeadMac,
    HeadSignature,
)
from ledger.errors import StateMovedError

__all__ = ["READ_TRIES", "key_rows", "moved_error", "replaced", "secrets_as_of",
           "vouches_up_to"]

# How many times a reader reads the state again before it gives up (each try is cheap
# next to what it copies; a rotation or shred is rare, two in a row rarer still).
READ_TRIES: Final = 5

# What a key rotation or a history fork replaces along with the sealed rows and the
# snapshots: the key check, the fingerprint key (re-sealed), the history id (MACs).
_KEY_ROWS: Final = ("ledger_id", "key_check", "fp_key", HISTORY_ID)


def vouches_up_to(key: str, text: str, seq: int) -> bool:
    """False for a head MAC or signature row that names an event after `seq`."""
    try:
        if key == HEAD_MAC:
            return HeadMac.decode(text).seq <= seq
        if key == HEAD_SIGNATURE:
            return HeadSignature.decode(text).seq <= seq
    except ValueError:
        pass  # malformed: the import refuses it, naming it
    return True


def key_rows(meta: Mapping[str, str]) -> tuple[str | None, ...]:
    """The meta rows a rotation or a fork changes: equal before and after the reads of
    the sealed rows and snapshots means those are of the same key and history."""
    return tuple(meta.get(k) for k in _KEY_ROWS)


def secrets_as_of(backend: Backend, head_seq: int) -> list[SecretRow] | None:
    """The secret rows of the state at `head_seq` (rows set after it left out), or None
    when one of them was shredded after it: its sealed value is gone, so that state can
    no longer be copied (read again: the head then holds the shred event)."""
    rows = []
    for row in backend.secrets():
        if row.created_seq > head_seq:
            continue
        if row.shredded_seq is not None and row.shredded_seq > head_seq:
            return None
        rows.append(row)
    return rows


def replaced(backend: Backend, head: Head) -> bool:
    """Whether the log no longer holds `head` (a restore or an import forked it): a read
    of its events that broke the chain then met another history, not damage."""
    rec = backend.record(head.seq) if head.seq else None
    return head.seq > 0 and (rec is None or rec.hash != head.hash)


def moved_error(location: str, doing: str) -> StateMovedError:
    """What a reader says when a try met a rotation, a fork or a shred."""
    return StateMovedError(
        f"{location}: the ledger's key was rotated, its history forked or a secret "
        f"shredded while {doing}, {READ_TRIES} times in a row; nothing was written. Try "
        "again once that is done")
