"""How the PostgreSQL backend names what went wrong with the server, against a real
server (LEDGER_TEST_PG_URL) and real psycopg errors: a server that does not answer,
and a write the server ended because its transaction sat idle too long.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from ledger.errors import StoreError
from ledger.schema import MoltisConfig
from tests.pg import fresh_pg_store

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def silent_address() -> Iterator[tuple[str, int]]:
    """A TCP address that accepts connections (the kernel completes the handshake from
    the listen backlog) and never answers: a server that hangs, or a middlebox that
    swallows the traffic. psycopg's connect_timeout then raises ConnectionTimeout, a
    subclass of OperationalError."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield "127.0.0.1", listener.getsockname()[1]
    finally:
        listener.close()


def test_a_server_that_does_not_answer_is_reported_as_unreachable(
        silent_address: tuple[str, int]) -> None:
    """Opening a store on an address that never answers fails after connect_timeout
    with psycopg's ConnectionTimeout: the operator must read "cannot reach the
    database", as for a refused connection, not "connecting failed"; and the password
    of the DSN is never shown."""
    from ledger.stores.postgres_store import PostgresConfigStore

    host, port = silent_address
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        PostgresConfigStore(f"postgresql://ledger:hunter2-secret@{host}:{port}/ledger"
                            "?connect_timeout=2")
    assert time.monotonic() - started < 30
    assert isinstance(info.value.__cause__, psycopg.errors.ConnectionTimeout)
    assert "cannot reach the database (connecting)" in str(info.value), str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_connection_timeout_counts_as_a_lost_connection(
        silent_address: tuple[str, int]) -> None:
    """The classifier the write and read paths retry by, on a real ConnectionTimeout
    caught from psycopg.connect. (Through the store's public API psycopg raises its
    subclasses only while connecting, which the constructor and the pool handle; a
    connection lost mid-statement is a plain OperationalError.)"""
    from ledger.backends.postgres import _connection_lost

    host, port = silent_address
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(host=host, port=port, user="ledger", dbname="ledger",
                        connect_timeout=2)
    assert type(info.value) is psycopg.errors.ConnectionTimeout
    assert _connection_lost(info.value)


@pytest.mark.postgres
def test_a_closed_store_is_not_reported_as_an_unreachable_server(pg_url: str) -> None:
    """psycopg-pool's PoolClosed is an OperationalError too, but it says this process
    closed its store, not that the server is out of reach."""
    store = fresh_pg_store(pg_url)
    store.pg.close()
    with pytest.raises(StoreError) as info:
        store.pg.head()
    assert "cannot reach the database" not in str(info.value), str(info.value)


@pytest.mark.postgres
@pytest.mark.slow  # ~31 s: the store's idle bound is at least 30 s, whatever its options
def test_a_write_idle_in_its_transaction_too_long_is_named_and_writes_nothing(
        pg_url: str) -> None:
    """A locked write whose transaction sits idle (here: its update function sleeps
    under the append lock) longer than idle_in_transaction_session_timeout is ended by
    the server (SQLSTATE 25P03). The caller is told that, with the bound and what to do,
    and that nothing was written, which holds: the head row and the log are as before
    and verify passes. The next write on the same store goes through (the dead
    connection is not reused)."""
    # the store sets the bound to the larger of 30 s and 4 busy timeouts: 30 s here
    store = fresh_pg_store(pg_url, pool_size=2, busy_timeout=1.0)
    asyncio.run(store.update_raw(lambda c: setattr(c.server, "port", 1000), actor="a"))
    before = store.pg.head()

    def stalls(cfg: MoltisConfig) -> None:
        time.sleep(31)  # inside the locked transaction (update_typed waits for the lock)
        cfg.server.port = 2000

    with pytest.raises(StoreError) as info:
        store.ledger.update_typed(stalls, actor="a")
    said = str(info.value)
    assert "idle_in_transaction_session_timeout (30 s)" in said, said
    assert "nothing was written" in said, said
    assert "busy_timeout" in said, said  # what raises the bound

    with psycopg.connect(pg_url, autocommit=True) as conn:
        schema = store.pg.schema
        head = conn.execute(f'SELECT seq, hash FROM "{schema}".ledger_head').fetchone()
        count = conn.execute(f'SELECT count(*) FROM "{schema}".ledger_events').fetchone()
    assert (head[0], bytes(head[1])) == (before.seq, bytes(before.hash))
    assert count == (1,)
    assert store.ledger.verify().ok
    assert asyncio.run(store.load_raw()).server.port == 1000

    commit = asyncio.run(store.update_raw(lambda c: setattr(c.server, "port", 3000),
                                          actor="a"))
    assert commit.seq == 2
    assert asyncio.run(store.load_raw()).server.port == 3000
    assert store.ledger.verify().ok
