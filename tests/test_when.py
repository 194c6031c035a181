"""Times typed as REFs: ISO-8601 and words, all UTC (ledger.core.when)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledger import InvalidRefError, SqliteConfigStore
from ledger.core.when import parse_when

# A Thursday afternoon.
NOW = datetime(2026, 11, 26, 15, 30, 0, tzinfo=UTC)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def end_of(*args: int) -> datetime:
    """A time given to the second names the end of that second (`log`'s precision)."""
    return datetime(*args, 999_999, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("2026-11-24", at(2026, 11, 24)),
    ("2026-11-24T09:00", at(2026, 11, 24, 9)),
    ("2026-11-24 09:00:00Z", end_of(2026, 11, 24, 9, 0, 0)),
    ("2026-11-24t09:00:00z", end_of(2026, 11, 24, 9, 0, 0)),
    ("2026-11-24T09:00:00+02:00", end_of(2026, 11, 24, 7, 0, 0)),
    ("2026-11-24T09:00:00.250Z", datetime(2026, 11, 24, 9, 0, 0, 250_000, tzinfo=UTC)),
    ("today", at(2026, 11, 26)),
    ("yesterday", at(2026, 11, 25)),
    ("Yesterday 18:00", at(2026, 11, 25, 18)),
    ("18:45", at(2026, 11, 26, 18, 45)),
    ("tuesday", at(2026, 11, 24)),
    ("last tuesday", at(2026, 11, 24)),
    ("last  Tue 09:30:15", end_of(2026, 11, 24, 9, 30, 15)),
    ("thursday", at(2026, 11, 19)),  # today is Thursday: the one before today
    ("fri", at(2026, 11, 20)),
    ("90s", NOW - timedelta(seconds=90)),
    ("15m", NOW - timedelta(minutes=15)),
    ("2h ago", NOW - timedelta(hours=2)),
    ("1h30m", NOW - timedelta(hours=1, minutes=30)),
    ("3 days ago", NOW - timedelta(days=3)),
    ("1 week 2 days", NOW - timedelta(days=9)),
    ("2w", NOW - timedelta(weeks=2)),
])
def test_times_in_words_and_iso(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", [
    "", "ago", "last", "last 2h", "tu", "mo", "someday", "2 fortnights", "1e3", "1_0",
    "25:00", "yesterday 9", "today 12:60", "12:00 tuesday", "2026-13-45", "h2",
    "١٢ h", "last yesterday", "3d tuesday",
])
def test_what_is_not_a_time(text: str) -> None:
    assert parse_when(text, NOW) is None


def test_an_age_beyond_the_calendar_is_before_everything() -> None:
    when = parse_when("999999999 weeks ago", NOW)
    assert when is not None and when < at(1, 1, 2)


def test_a_time_without_an_offset_is_utc_whatever_the_local_zone() -> None:
    plus_five = timezone(timedelta(hours=5))
    now_there = NOW.astimezone(plus_five)  # already Friday 20:30 at +05:00
    assert parse_when("today", now_there) == at(2026, 11, 26)
    assert parse_when("2026-11-24 09:00", now_there) == at(2026, 11, 24, 9)


def test_store_reads_the_past_by_words(tmp_path) -> None:
    store = SqliteConfigStore(tmp_path / "l.db")

    async def go() -> None:
        for port in (1, 2, 3):
            await store.update_raw(lambda c, p=port: setattr(c.server, "port", p),
                                   actor="ops")
        head = await store.head_seq()
        assert store.resolve_ref("now") == head
        # every event was written just now, so a day ago there was nothing yet
        for before_all in ("yesterday", "1h ago", "last monday", "3d"):
            assert store.resolve_ref(before_all) == 0
            assert await store.load_raw_at(before_all) == await store.load_raw_at(0)
        assert [ev.seq for ev in await store.history(since="1d")] == [3, 2, 1]
        with pytest.raises(InvalidRefError, match="last tuesday 18:00"):
            store.resolve_ref("the day before")

    asyncio.run(go())
    store.ledger.close()


def test_a_time_copied_from_log_bounds_a_range_with_that_event_inside(tmp_path) -> None:
    """`log` prints an event's time to the second; as `--since` that time starts at the
    start of the second, as `--until` (or `--at`) it ends at its end: either way the
    event printed with it is in the range (r16 moved `--at`'s time to the end of the
    second, and the shared parser carried `--since` there too, which left it out)."""
    store = SqliteConfigStore(tmp_path / "l.db")

    async def go() -> None:
        for port in (1, 2, 3):
            await store.update_raw(lambda c, p=port: setattr(c.server, "port", p),
                                   actor="ops")
        second = (await store.history())[1]  # seq 2
        printed = second.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        since = [ev.seq for ev in await store.history(since=printed)]
        until = [ev.seq for ev in await store.history(until=printed)]
        assert 2 in since and 3 in since
        assert 2 in until and 1 in until
        assert (await store.load_raw_at(printed)).server.port >= 2
        # a fraction names that instant, for either bound
        exact = second.time.astimezone(UTC).isoformat()
        assert [ev.seq for ev in await store.history(since=exact)] == [3]

    asyncio.run(go())
    store.ledger.close()


def test_a_lower_bound_to_the_second_starts_before_its_first_microsecond() -> None:
    """`log --since T`: the state just before the second T, so an event stamped at
    exactly T.000000 is in the range (a state "as of" T.000000 would hold it)."""
    assert parse_when("2026-11-24 09:00:05Z", NOW, lower_bound=True) == datetime(
        2026, 11, 24, 9, 0, 4, 999_999, tzinfo=UTC)
    assert parse_when("2026-11-24 09:00:05.000Z", NOW, lower_bound=True) == datetime(
        2026, 11, 24, 9, 0, 5, tzinfo=UTC)  # a fraction names that very instant
    assert parse_when("yesterday 18:00:05", NOW, lower_bound=True) == datetime(
        2026, 11, 25, 18, 0, 4, 999_999, tzinfo=UTC)
