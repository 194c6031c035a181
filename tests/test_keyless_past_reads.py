"""Past reads in a process without the ledger key hold a bounded buffer.

Without the key no snapshot can anchor a past read's forward proof, so the walk goes on
to the head served (ledger.engine.past_proof). It held every event it walked (their
hashes, and the records it was to serve) until it got there: memory in proportion to
the log, ~200 bytes per event (a `log` or `state_at` on a 1,000,000-event ledger read by
an operator without the key file: hundreds of MB). The walk now proves the rest of the
way ahead, keeping one proven hash per stretch of the log, and serves as it goes.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import apsw
import pytest

from ledger.backends.memory import MemoryBackend
from ledger.backends.sqlite import SqliteBackend
from ledger.engine.ledger import Ledger
from ledger.engine.vault import KeySource
from ledger.errors import VerificationError
from ledger.ops.transfer import copy_ledger
from ledger.stores.ledger_store import SqliteConfigStore

# a large ledger built and walked to measure memory: run by .ci/run
pytestmark = pytest.mark.slow

T = TypeVar("T")
EVENTS = 40_000
BOUND = 5_000_000  # bytes: before, 8.8 MB for state_at and 26 MB for events() here


@pytest.fixture(scope="module")
def ledger_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite ledger of EVENTS changes of server.port (1000 + seq), written by a writer
    without a key (as `copy_ledger` copies them: the same rows, one transaction)."""
    source = Ledger(MemoryBackend())
    for seq in range(1, EVENTS + 1):
        source.edit({("server", "port"): 1000 + seq}, actor="a@b", reason="r")
    db = tmp_path_factory.mktemp("keyless") / "moltis.db"
    target = SqliteBackend(db)
    try:
        assert copy_ledger(source.backend, target).ok
    finally:
        target.close()
    return db


def _reader(db: Path) -> Iterator[Ledger]:
    store = SqliteConfigStore(db, keys=KeySource(key_file=db.parent / "absent.key", env={}))
    try:
        store.ledger.head_state()
        yield store.ledger
    finally:
        asyncio.run(store.close())


@pytest.fixture
def reader(ledger_file: Path) -> Iterator[Ledger]:
    yield from _reader(ledger_file)


def _peak(fn: Callable[[], T]) -> tuple[T, int]:
    """What `fn` returns, and the most memory Python held while it ran."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_past_state_far_below_the_head_is_read_in_bounded_memory(reader: Ledger) -> None:
    state, peak = _peak(lambda: reader.state_at(5))
    assert state.config["server"]["port"] == 1005
    assert peak < BOUND, f"{peak:,} bytes"
    # the proof is kept (bounded) for the head served: nearby reads anchor at once
    state, peak = _peak(lambda: reader.state_at(3000))
    assert state.config["server"]["port"] == 4000
    assert peak < BOUND, f"{peak:,} bytes"


def test_every_event_is_served_in_bounded_memory_and_in_order(reader: Ledger) -> None:
    def every_event() -> tuple[int, int]:
        count, last = 0, 0
        for rec in reader.events(after=0):
            assert rec.seq == last + 1
            count, last = count + 1, rec.seq
        return count, last

    (count, last), peak = _peak(every_event)
    assert (count, last) == (EVENTS, EVENTS)
    assert peak < BOUND, f"{peak:,} bytes"


def test_an_event_changed_far_below_the_head_under_an_open_reader_is_never_served(
        ledger_file: Path, tmp_path: Path) -> None:
    """Proving ahead changes where the proof is kept, not what it proves: an event far
    below the head changed in place after the reader opened (a keyless open walks the
    whole log, so it would refuse it there) is refused by every read that reaches it;
    a state below it, rebuilt from intact events to a hash proven before, is served."""
    db = tmp_path / "moltis.db"
    copy = apsw.Connection(str(db))
    with apsw.Connection(str(ledger_file)) as src, copy.backup("main", src, "main") as b:
        b.step()
    for led in _reader(db):
        assert led.state_at(10).config["server"]["port"] == 1010
        copy.execute("DROP TRIGGER ledger_events_no_update")
        copy.execute("UPDATE ledger_events SET reason = 'forged' WHERE seq = 20000")
        assert led.state_at(10_000).config["server"]["port"] == 11_000
        for after, until in ((19_990, 20_010), (0, None), (19_999, 20_000)):
            with pytest.raises(VerificationError, match="event 20000 was changed"):
                list(led.events(after=after, until=until))
        with pytest.raises(VerificationError, match="event 20000 was changed"):
            led.state_at(20_000)
    copy.close()
