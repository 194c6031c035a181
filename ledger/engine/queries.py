"""Queries on a `Ledger` that operators phrase in words: REFs (a seq, `-3`, `head`, a
time) resolved to a seq, and the history filtered by path, actor and time range."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from ledger.core.events import Event
from ledger.core.keypaths import KeyPath, parse_path
from ledger.core.when import parse_when
from ledger.engine.ledger import Ledger
from ledger.errors import InvalidRefError

__all__ = ["Ref", "iter_history", "resolve_ref"]

Ref = int | str | datetime  # a seq, a REF text (-3, "yesterday", ISO time) or a datetime
# Every seq fits in a signed 64-bit integer (SQLite, PostgreSQL bigint): a longer number
# is outside the log, said before int() (which refuses more than 4300 digits).
MAX_SEQ_DIGITS = 18


def resolve_ref(ledger: Ledger, ref: Ref, *, strict: bool = False,
                lower_bound: bool = False) -> int:
    """A REF: a seq (`12`), `-N` (N events back from the head), `head`, or a time (the
    state as of that instant): ISO-8601 or words, see `ledger.core.when`.

    With `strict` (what an operator's REF gets), a time before the first event is an
    error naming that event's time (the empty state before it is `0`, asked for by
    name), so that `rollback --to yesterday` on a ledger created today cannot empty it;
    otherwise (a range bound such as `log --since`, the library) it resolves to 0.
    `lower_bound`: the REF starts a range (`log --since`): a time to the second names
    the start of that second, so the events `log` printed with it are in the range."""
    head = ledger.head_state().seq
    if isinstance(ref, datetime):
        when = ref if ref.tzinfo else ref.replace(tzinfo=UTC)
        return _at_time(ledger, when, ref, head, strict)
    if isinstance(ref, int) and not isinstance(ref, bool):
        seq = ref
    elif isinstance(ref, str):
        text = ref.strip()
        if text.lower() in ("head", "latest"):
            return head
        digits = text.removeprefix("-")
        if len(digits) > MAX_SEQ_DIGITS and digits.isascii() and digits.isdigit():
            raise InvalidRefError(f"REF {text[:24]}… ({len(digits)} digits) is outside the "
                                  f"log (0..{head})")
        if text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
            seq = head - int(text[1:])
            if seq < 0:
                raise InvalidRefError(f"REF {text}: the log has only {head} events")
            return seq
        if text.isascii() and text.isdigit():
            seq = int(text)
        else:
            moment = parse_when(text, lower_bound=lower_bound)
            if moment is None:
                raise InvalidRefError(
                    f"REF {ref!r} is not a seq (12), a relative seq (-3), 'head', an "
                    "ISO-8601 time (2026-11-24T09:00:00Z) or a UTC time in words "
                    "(yesterday, last tuesday 18:00, 2h ago)")
            return _at_time(ledger, moment, ref, head, strict)
    else:
        raise InvalidRefError(f"REF {ref!r} has an unsupported type")
    if not 0 <= seq <= head:
        raise InvalidRefError(f"REF {ref}: seq {seq} is outside the log (0..{head})")
    return seq


def _at_time(ledger: Ledger, moment: datetime, ref: Ref, head: int, strict: bool) -> int:
    seq = ledger.seq_at_time(moment)
    if seq == 0 and head > 0 and strict:
        first = ledger.event(1)
        started = first.time.isoformat(timespec="seconds") if first else "?"
        shown = ref.isoformat() if isinstance(ref, datetime) else repr(ref)
        raise InvalidRefError(
            f"REF {shown} ({moment.isoformat(timespec='seconds')}) is before the first event "
            f"(seq 1 at {started}); the empty state before it is REF 0, by name")
    return seq


def iter_history(ledger: Ledger, *, path: str | KeyPath | None = None, actor: str | None = None,
                 since: Ref | None = None, until: Ref | None = None,
                 limit: int | None = None, doc: str | None = None) -> Iterator[Event]:
    prefix = parse_path(path) if isinstance(path, str) else path
    lo = resolve_ref(ledger, since, lower_bound=True) if since is not None else 0
    hi = resolve_ref(ledger, until) if until is not None else None
    count = 0
    # `since` names a state: the events after it are the changes made since then.
    for ev in ledger.events(after=lo, until=hi, descending=True):
        if actor is not None and ev.actor != actor:
            continue
        if prefix is not None and not ev.touches(prefix, doc):
            continue
        yield ev
        count += 1
        if limit is not None and count >= limit:
            return
