"""Does the ledger say the format version its events need?

A ledger says format 1 until its first event with secrets inside a list (`Change.sealed`)
raises it to 2 (the backends do, in that event's transaction). A ledger holding such an
event while it says 1 was written by a release that seals list elements but predates
the rule (8b561be: it reads them correctly), copied by a tool that did not raise it, or
its meta was edited: this release reads it as usual, but a release from before issue 14
(before commit 28ae258) would open it and hand the gateway `{"$secret": …}` tables
inside those lists. `verify` and `check` name it, with the repair: the first write of a
ledger object of this release raises it when the head state holds such an element
(`Ledger._raise_stale_format`), and `rebuild-snapshots` from the whole log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ledger.backends.base import (  # FormatScan: re-exported, its one home is the backends
    FORMAT_SEALED_LISTS,
    Backend,
    FormatScan,
)
from ledger.core.secret_refs import refs_in

__all__ = ["REPAIR", "FormatScan", "format_problem", "lists_hold_secrets", "log_format",
           "stated_format"]

REPAIR = ("run `moltis-ledger rebuild-snapshots` with this release to raise it (it reads "
          "the whole log); this release reads the ledger either way")


def stated_format(backend: Backend) -> int | None:
    """The ledger's `format_version` meta value; None when missing or not a number
    (the open refuses those before anything reads it)."""
    value = backend.get_meta("format_version")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def log_format(backend: Backend) -> int:
    """The format version the whole log needs (a read of every event, stopping at the
    first one that needs the highest); VerificationError for one that does not decode."""
    scan = FormatScan()
    for seq, kind, payload, _hash, _ts in backend.read_rows():
        scan.see(seq, kind, payload)
        if scan.done:
            break
    scan.check()
    return scan.needed


def format_problem(backend: Backend, sealed_seq: int | None, where: str) -> str | None:
    """The warning when the ledger holds a sealed list element (first seen at
    `sealed_seq`, an event or the head state) but says a lower format; else None."""
    if sealed_seq is None:
        return None
    stated = stated_format(backend)
    if stated is None or stated >= FORMAT_SEALED_LISTS:
        return None
    return (f"{backend.location}: {where} {sealed_seq} holds secrets inside a list (format "
            f"{FORMAT_SEALED_LISTS}), but the ledger says format {stated}: a release from "
            "before issue 14 (before commit 28ae258) would open it and hand the gateway "
            "reference tables in those lists instead of the values (later releases read "
            f"them correctly); the next write of this release raises it, or {REPAIR}")


def lists_hold_secrets(docs: Iterable[Any]) -> bool:
    """True if a list anywhere in these documents holds a secret reference (an element,
    or a value of a table inside it): what only a format 2 reader understands."""
    stack = list(docs)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list) and any(refs_in(value)):
            return True
    return False

