"""The full replay's lean read and fold (figure 5a), on memory, SQLite and PostgreSQL:

* `Backend.read_changes` gives the last event's head and the change events' payloads;
* `Ledger.replay()` (over `read_changes`), `replay_rows` (over `read_rows`, as verify and
  snapshot rebuilds use it) and `state_at` (a snapshot + the tail) all equal the
  reference fold (`projections.config_view.replay`, copy-on-write through
  `apply_changes`), provenance included, for any sequence of raw changes: tables made,
  replaced by a leaf and by an empty table, unset, the keys document, several changes in
  one event, and events of another kind;
* verify, which folds the rows its chain walk reads, agrees;
* a damaged payload is still named by its seq.

Events go in as the engine writes them (`encode_payload`, `chain.link`), through the
backend's own write transaction, so the changes need not pass the schema.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.core.chain import link
from ledger.core.events import (
    KIND_CHANGE,
    KIND_SHRED,
    Change,
    ChangePayload,
    Record,
    ShredPayload,
    encode_payload,
)
from ledger.engine.ledger import Ledger
from ledger.errors import LedgerError
from projections.config_view import EMPTY_STATE, ConfigState, replay, replay_rows
from tests.contract.test_backend_contract import Kit, kit  # noqa: F401 (the fixture)

KEYS = ("a", "b", "c")
paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(tuple)
values = st.one_of(st.integers(-3, 3), st.text("xy", max_size=2), st.just({}),
                   st.lists(st.integers(0, 2), max_size=2))
change = st.one_of(
    st.builds(lambda p, v, d: Change(op="set", path=p, value=v, doc=d), paths, values,
              st.sampled_from(["config", "config", "keys"])),
    st.builds(lambda p, d: Change(op="unset", path=p, doc=d), paths,
              st.sampled_from(["config", "keys"])),
)
# an event: some changes, or a non-change event (a shred, which replay skips)
event = st.one_of(st.lists(change, min_size=1, max_size=3), st.just(None))


def append_events(backend: Any, events: list[list[Change] | None]) -> list[Record]:
    """Link and append the events after the backend's head; returns the whole log."""
    head = backend.head()
    prev, seq, ts = head.hash, head.seq, head.ts
    batch: list[Record] = []
    for changes in events:
        seq, ts = seq + 1, ts + 1
        if changes is None:
            kind, payload = KIND_SHRED, encode_payload(ShredPayload(secrets=[]))
        else:
            kind, payload = KIND_CHANGE, encode_payload(ChangePayload(changes=changes))
        h = link(prev, seq, ts, "t", "", "api", kind, payload)
        batch.append(Record(seq, ts, "t", "", "api", kind, payload, prev, h))
        prev = h
    if batch:
        with backend.write() as txn:
            txn.append(batch)
    return list(backend.read())


def folds(state: ConfigState) -> tuple[Any, ...]:
    return (state.seq, state.hash, state.ts, state.config, state.keys, state.prov_config,
            state.prov_keys)


def reference(records: list[Record]) -> ConfigState | None:
    """The copy-on-write fold, or None when the log does not apply (a value in the way)."""
    try:
        return replay(EMPTY_STATE, records)
    except LedgerError:
        return None


def check(ledger: Ledger, records: list[Record]) -> None:
    want = reference(records)
    backend = ledger.backend
    if want is None:
        with pytest.raises(LedgerError):
            ledger.replay()
        with pytest.raises(LedgerError):
            replay_rows(EMPTY_STATE, backend.read_rows(), private=False)
        return
    assert folds(ledger.replay()) == folds(want)
    # verify folds the rows its chain walk reads, and compares every snapshot (written
    # by replay_rows) and the served head (a snapshot + read_changes) with its fold
    ledger.sign_head(adopt=True)
    report = ledger.verify()
    assert report.ok, report.problem
    assert folds(replay_rows(EMPTY_STATE, backend.read_rows(), private=False)) == folds(want)
    for seq in range(len(records) + 1):  # snapshots every 3 events: snapshot + tail
        past = replay(EMPTY_STATE, records[:seq])
        assert folds(ledger.state_at(seq)) == folds(past)
        assert folds(ledger.replay(until=seq)) == folds(past)


def _every_replay_equals_the_reference_fold(kit: Kit, events: list[Any]) -> None:  # noqa: F811
    ledger = Ledger(kit.reopen(), snapshot_every=3)
    try:
        records = append_events(ledger.backend, events)
        if reference(records) is not None:
            ledger.rebuild_snapshots()
        check(ledger, records)
    finally:
        ledger.close()


_EVENTS = st.lists(event, max_size=12)
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=100, deadline=None, suppress_health_check=_SLOW_OK)
@given(_EVENTS)
@pytest.mark.parametrize("kit", ["memory", "sqlite"], indirect=True)
def test_every_replay_equals_the_reference_fold(kit: Kit, events: list[Any]) -> None:  # noqa: F811
    _every_replay_equals_the_reference_fold(kit, events)


# The same property on PostgreSQL with fewer examples: the fold and the reference are
# the same code whatever the backend, and run on 100 examples above; what PostgreSQL
# adds is its reads (read_changes, read_rows, the snapshot rows), which 30 examples of
# up to 12 events each, appended to one growing log, exercise as well. Each example
# opens the backend again (~30 ms of connection and schema checks), and the checks
# replay the whole grown log once per seq.
# psycopg_pool's worker threads draw from the global `random` (connection expiry
# jitter) while Hypothesis draws an example; Hypothesis reads that as a strategy using
# `random` and warns (an error here). Nothing of this test's strategies does.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:"
    "hypothesis.errors.HypothesisDeprecationWarning")
@settings(max_examples=30, deadline=None, suppress_health_check=_SLOW_OK)
@given(_EVENTS)
@pytest.mark.parametrize("kit", ["postgres"], indirect=True)
def test_every_replay_equals_the_reference_fold_on_postgres(
        kit: Kit, events: list[Any]) -> None:  # noqa: F811
    _every_replay_equals_the_reference_fold(kit, events)


@pytest.mark.parametrize("between", ["set a = {}", "unset a", "unset a.b", "keys a = 1",
                                     "two changes"])
def test_the_fold_forgets_where_tables_were_when_they_may_move(kit: Kit, between: str  # noqa: F811
                                                               ) -> None:
    """The fold remembers where a.b's table is after setting it twice; an event that may
    replace that table (a leaf set over it, an unset, anything not a plain leaf set) must
    make the next a.b land in the table the document has then, not the old one."""
    def set_(path: tuple[str, ...], value: Any, doc: Any = "config") -> Change:
        return Change(op="set", path=path, value=value, doc=doc)

    middle = {"set a = {}": [set_(("a",), {})],
              "unset a": [Change(op="unset", path=("a",))],
              "unset a.b": [Change(op="unset", path=("a", "b"))],
              "keys a = 1": [set_(("a",), 1, "keys")],
              "two changes": [set_(("a",), {}), set_(("c",), 1)]}[between]
    events: list[Any] = [[set_(("a", "b"), 1)], [set_(("a", "b"), 2)], middle,
                         [set_(("a", "b"), 3)], [set_(("a", "c"), 4)], [set_(("a", "b"), 5)]]
    ledger = Ledger(kit.reopen())
    records = append_events(ledger.backend, events)
    state = ledger.replay()
    assert state.config["a"] == {"b": 5, "c": 4}
    assert state.prov_config["a"] == {"b": 6, "c": 5}
    check(ledger, records)


def test_read_changes_gives_the_last_events_head_and_only_change_payloads(kit: Kit) -> None:  # noqa: F811
    backend = kit.reopen()
    assert backend.read_changes()[0] is None
    assert list(backend.read_changes()[1]) == []
    one = [Change(op="set", path=("a",), value=1)]
    records = append_events(backend, [one, None, one, None])
    tail, changes = backend.read_changes()
    assert tail is not None
    assert (tail.seq, tail.hash, tail.ts) == (4, records[3].hash, records[3].ts)
    assert [(seq, bytes(p)) for seq, p in changes] == [(1, records[0].payload),
                                                        (3, records[2].payload)]
    tail, changes = backend.read_changes(after=1, until=3)
    assert tail is not None and tail.seq == 3
    assert [seq for seq, _ in changes] == [3]
    assert backend.read_changes(after=4)[0] is None
    state = Ledger(backend).replay()
    assert (state.seq, state.hash, state.config) == (4, records[3].hash, {"a": 1})


def test_a_damaged_payload_is_named_by_its_seq(kit: Kit) -> None:  # noqa: F811
    backend = kit.reopen()
    records = append_events(backend, [[Change(op="set", path=("a",), value=1)]] * 3)
    bad = b'{"changes":[{"op":"set","path":["a"],"value":'
    if kit.sql is None:
        import msgspec

        kit.backend._tamper_replace(2, msgspec.structs.replace(records[1], payload=bad))  # type: ignore[attr-defined]
    else:
        kit.sql("UPDATE ledger_events SET payload = ? WHERE seq = ?", (bad, 2))
    with pytest.raises(LedgerError, match="event 2 cannot be decoded"):
        Ledger(kit.reopen()).replay()
