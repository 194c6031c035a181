"""Times an operator types for a REF: ISO-8601, or words like `yesterday`, `last tuesday`,
`2h ago`. All in UTC, like the times `log` prints, so what you read is what you type.

- ISO-8601: `2026-11-24`, `2026-11-24T09:00`, `2026-11-24 09:00:00Z`, `...+02:00`;
  without an offset the time is UTC;
- `now`; `today`, `yesterday`, a weekday (`tuesday`, `tue`, `last tuesday`: the latest
  such day before today), each at 00:00 UTC or at a time given after it
  (`yesterday 18:00`); a bare `18:00` is today;
- an age: a number and a unit, repeated, optionally followed by `ago`: `90s`, `15m`,
  `2h`, `1h30m`, `3 days ago`, `1w` (units s, m/min, h, d, w and their English words).

A time given to the second, without a fraction (`2026-11-24 09:00:05Z`, as `log` prints
an event's time), names the end of that second: the state after every event `log`
shows at that time (review r16: `--at` with a time copied from `log` gave the state
before that event, which happened some milliseconds into the second). As the lower bound
of a range (`log --since`) it names the start of that second instead, so the events
`log` shows at that time are inside the range from either end.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

__all__ = ["parse_when"]

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS = {
    "s": "seconds", "sec": "seconds", "secs": "seconds", "second": "seconds",
    "seconds": "seconds",
    "m": "minutes", "min": "minutes", "mins": "minutes", "minute": "minutes",
    "minutes": "minutes",
    "h": "hours", "hr": "hours", "hrs": "hours", "hour": "hours", "hours": "hours",
    "d": "days", "day": "days", "days": "days",
    "w": "weeks", "week": "weeks", "weeks": "weeks",
}
# compiled on first use (by `re`'s own cache), not at import: most commands that import
# this module never read a time (issue 16)
_AGE_PART = r"(\d{1,9})\s*([a-z]+)\s*"
_CLOCK = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"


def parse_when(text: str, now: datetime | None = None, *,
               lower_bound: bool = False) -> datetime | None:
    """The instant `text` names (timezone-aware), or None when it names no time;
    `lower_bound`: a time to the second starts that second (see the module docstring)."""
    now = now if now is not None else datetime.now(UTC)
    words = " ".join(text.strip().lower().split())
    if not words.isascii():
        return None
    if words == "now":
        return now
    when = _iso(words) or _age(words, now) or _day(words, now)
    if when is not None and _to_the_second(words):
        # the state after the second (`--at`), or just before it (`--since`: an event
        # stamped on the second's first microsecond is inside the range too)
        return when - timedelta(microseconds=1) if lower_bound else when.replace(
            microsecond=999_999)
    return when


def _iso(words: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(words.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _to_the_second(words: str) -> bool:
    """Whether `words` give a clock time to the second, without a fraction."""
    return re.search(r"\d:\d{2}:\d{2}(?![.,]\d)", words, re.ASCII) is not None


def _age(words: str, now: datetime) -> datetime | None:
    body = words.removesuffix(" ago").removesuffix("ago")
    pos, amounts = 0, dict.fromkeys(("seconds", "minutes", "hours", "days", "weeks"), 0)
    while pos < len(body):
        m = re.compile(_AGE_PART, re.ASCII).match(body, pos)
        if m is None or m.group(2) not in _UNITS:
            return None
        amounts[_UNITS[m.group(2)]] += int(m.group(1))
        pos = m.end()
    if pos == 0:
        return None
    try:
        return now - timedelta(**amounts)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)  # older than anything in the log


def _day(words: str, now: datetime) -> datetime | None:
    day_word, _, clock_text = words.removeprefix("last ").partition(" ")
    clock = time(0, 0)
    if re.fullmatch(_CLOCK, day_word, re.ASCII) and not clock_text:
        day_word, clock_text = "today", day_word
    if clock_text:
        m = re.fullmatch(_CLOCK, clock_text, re.ASCII)
        if m is None:
            return None
        try:
            clock = time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
        except ValueError:
            return None
    today = now.astimezone(UTC).date()
    if day_word == "today" and not words.startswith("last "):
        day = today
    elif day_word == "yesterday" and not words.startswith("last "):
        day = today - timedelta(days=1)
    else:
        index = next((i for i, name in enumerate(_WEEKDAYS)
                      if len(day_word) >= 3 and name.startswith(day_word)), None)
        if index is None:
            return None
        back = (today.weekday() - index) % 7 or 7  # the latest one before today
        day = today - timedelta(days=back)
    return datetime.combine(day, clock, tzinfo=UTC)
