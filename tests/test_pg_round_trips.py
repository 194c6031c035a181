"""Figure 10a's mechanism on PostgreSQL (LEDGER_TEST_PG_URL): a keyed `update_raw` of a
writer alone on its ledger is ONE round trip (the optimistic one-statement append: the
event, the head row, the head MAC, the notification), not the locked way (BEGIN + lock +
head, then the statements with the COMMIT: two or three). Last session a key check
re-read inside every write turned each keyed write into the locked way and nobody
noticed until the benchmark run (figure 10a fell from 0.44x to 0.22x).

Counted in libpq's own protocol trace of the store's writer connection (every message
the client sends), never by time: a round trip is a message that makes the server
answer (Sync ends an extended-protocol exchange, Query is a simple query)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest

from ledger.stores.postgres_store import PostgresConfigStore
from tests.conftest import run
from tests.pg import fresh_pg_store

pytestmark = pytest.mark.postgres  # counted, and never skipped under CI=true

DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600}}


def increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def _messages(store: PostgresConfigStore, writes: int) -> list[str]:
    """The messages (their type names) the client sent on the store's writer
    connection during `writes` async `update_raw` calls."""
    from psycopg import pq

    writer = store.pg._writer  # kept checked out for writes (pool_size > 1)
    assert writer is not None, "the store has no writer connection of its own"
    pgconn = writer[0].pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            for _ in range(writes):
                run(store.update_raw(increment, actor="gateway"))
        finally:
            pgconn.untrace()
        os.fsync(trace.fileno())
        trace.seek(0)
        lines = trace.read().splitlines()
    # "F\t<length>\t<message> ..." for what the client (frontend) sent
    return [line.split("\t")[2].split(" ")[0] for line in lines if line.startswith("F\t")]


def _round_trips(messages: list[str]) -> int:
    return sum(1 for m in messages if m in ("Sync", "Query"))


def test_a_keyed_writer_alone_appends_in_one_round_trip(pg_url: str) -> None:
    store = fresh_pg_store(pg_url, pool_size=2)
    run(store.save_raw(DOC, actor="setup", source="import"))
    run(store.update_raw(increment, actor="gateway"))  # the writer connection is kept
    assert store.ledger.vault.integrity() is not None, "the test needs a keyed ledger"
    messages = _messages(store, 10)
    assert _round_trips(messages) == 10, messages
    assert messages.count("Bind") == 10  # one statement per write: the append
    report = store.ledger.verify()
    assert report.ok, report
    assert run(store.load_raw()).tools.agent_timeout_secs == 611


def test_after_another_writer_appended_it_returns_to_one_round_trip(pg_url: str) -> None:
    store = fresh_pg_store(pg_url, pool_size=2)
    run(store.save_raw(DOC, actor="setup", source="import"))
    run(store.update_raw(increment, actor="gateway"))
    other = PostgresConfigStore(pg_url, schema=store.pg.schema, pool_size=2)
    try:
        run(other.update_raw(increment, actor="other"))
    finally:
        run(other.close())
    # the stale head sends the next write the locked way (catching up on the other's
    # event), and the one after it, at most, finds nobody else wrote
    for _ in range(3):
        run(store.update_raw(increment, actor="gateway"))
    assert _round_trips(_messages(store, 10)) == 10
    assert store.ledger.verify().ok
    assert run(store.load_raw()).tools.agent_timeout_secs == 615
