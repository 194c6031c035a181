"""Issue 16 on PostgreSQL (LEDGER_TEST_PG_URL): appends serialize on the ledger's
advisory append lock, a locked write's statements travel with its COMMIT, and
concurrent writers of one process commit in groups (one transaction each group).

Groups are formed deterministically, never by timing: the first writer's `fn` runs
inside its transaction and waits until the others are queued behind it. Which
transaction stored an event is read from PostgreSQL itself (each row's `xmin`), so
"one transaction for the group" is the server's word, not an instrumented client's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ledger import ConfigValidationError, ConflictError
from ledger.engine.ledger import Commit, Ledger
from ledger.errors import StoreBusyError
from ledger.schema import MoltisConfig
from ledger.stores.postgres_store import PostgresConfigStore
from tests.conftest import run
from tests.pg import fresh_pg_store

pytestmark = pytest.mark.postgres  # counted, and never skipped under CI=true

DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600}}
PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time


@pytest.fixture
def pg(pg_url):
    import psycopg

    conn = psycopg.connect(pg_url, autocommit=True)
    yield conn
    conn.close()


def new_store(url: str, **kw: Any) -> PostgresConfigStore:
    kw.setdefault("pool_size", 2)
    store = fresh_pg_store(url, **kw)
    run(store.save_raw(DOC, actor="setup", source="import"))
    return store


def increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def xmins(pg: Any, store: PostgresConfigStore) -> dict[int, int]:
    """seq -> the id of the transaction that inserted it (PostgreSQL's xmin)."""
    rows = pg.execute(f'SELECT seq, xmin::text FROM "{store.pg.schema}".ledger_events')
    return {int(seq): int(x) for seq, x in rows}


def wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("the writers never queued")
        time.sleep(0.001)


class Outcome:
    def __init__(self) -> None:
        self.commit: Commit | None = None
        self.error: BaseException | None = None
        self.visible_to_others: bool | None = None


def in_thread(ledger: Ledger, fn: Callable[[Any], Any], url: str, schema: str, **kw: Any
              ) -> tuple[threading.Thread, Outcome]:
    import psycopg

    out = Outcome()

    def body() -> None:
        try:
            out.commit = ledger.update_typed(fn, actor="t", **kw)
        except BaseException as err:
            out.error = err
            return
        # acknowledged only after its commit: another connection sees the event at once
        with psycopg.connect(url, autocommit=True) as other:
            row = other.execute(f'SELECT count(*) FROM "{schema}".ledger_events '
                                "WHERE seq = %s", (out.commit.seq,)).fetchone()
        out.visible_to_others = out.commit.appended and row is not None and row[0] == 1

    thread = threading.Thread(target=body)
    thread.start()
    return thread, out


def queued(ledger: Ledger) -> int:
    committer = ledger._committer
    assert committer is not None
    with committer._cond:
        return len(committer._queue)


def grouped(store: PostgresConfigStore, url: str,
            fns: list[tuple[Callable[[Any], Any], dict[str, Any]]]) -> list[Outcome]:
    """Run a blocker, then `fns` queued behind it (one group); their outcomes."""
    ledger, schema = store.ledger, store.pg.schema
    release = threading.Event()

    def blocker(cfg: Any) -> None:
        cfg.server.port = 14000
        assert release.wait(PATIENCE_S)

    first, first_out = in_thread(ledger, blocker, url, schema)
    wait_until(lambda: ledger._committer is not None and ledger._committer._leading)
    threads, outs = [], []
    for fn, kw in fns:
        t, o = in_thread(ledger, fn, url, schema, **kw)
        threads.append(t)
        outs.append(o)
    wait_until(lambda: queued(ledger) == len(fns))
    release.set()
    first.join(PATIENCE_S)
    assert first_out.error is None and first_out.visible_to_others
    for t in threads:
        t.join(PATIENCE_S)
    return outs


# -- group commit ------------------------------------------------------------------------

def test_queued_writers_commit_in_one_transaction_each_with_its_own_event(pg_url, pg):
    store = new_store(pg_url)
    ledger = store.ledger
    head = ledger.head_state().seq
    outs = grouped(store, pg_url, [(increment, {}) for _ in range(4)])
    seqs = sorted(o.commit.seq for o in outs if o.commit is not None)
    assert seqs == [head + 2, head + 3, head + 4, head + 5]
    assert all(o.error is None and o.visible_to_others for o in outs)
    tx = xmins(pg, store)
    assert len({tx[s] for s in seqs}) == 1  # four events, one transaction
    assert tx[head + 1] != tx[head + 2]  # the blocker's own transaction came first
    assert run(store.load_raw()).tools.agent_timeout_secs == 604
    report = ledger.verify()
    assert report.ok and report.events == head + 5
    records = list(ledger.backend.read(after=head))
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]


def test_a_failing_fn_or_invalid_value_affects_only_its_caller(pg_url, pg):
    from ledger.core.secret_refs import Secret
    from ledger.schema import ProviderConfig

    store = new_store(pg_url)
    ledger = store.ledger

    def boom(cfg: Any) -> None:
        cfg.tools.agent_timeout_secs = 1  # changed, then the caller fails
        raise RuntimeError("the caller's own bug")

    def invalid_with_secret(cfg: MoltisConfig) -> None:
        # the secret is sealed into the transaction before the bad value is found: the
        # failed scope must take its secrets row with it (verify names orphans)
        cfg.providers["anthropic"] = ProviderConfig(api_key=Secret("sk-ant-orphan-0001"))
        cfg.server.port = "not a port"  # type: ignore[assignment]

    def later(cfg: Any) -> None:
        cfg.server.port = 15000

    outs = grouped(store, pg_url, [(increment, {}), (boom, {}), (invalid_with_secret, {}),
                                   (later, {})])
    ok, failed, bad, last = outs
    assert ok.error is None and ok.visible_to_others
    assert isinstance(failed.error, RuntimeError) and failed.commit is None
    assert isinstance(bad.error, ConfigValidationError) and "server.port" in str(bad.error)
    assert last.error is None and last.visible_to_others
    assert last.commit is not None and ok.commit is not None
    assert last.commit.seq == ok.commit.seq + 1  # no hole where the failures were
    tx = xmins(pg, store)
    assert tx[ok.commit.seq] == tx[last.commit.seq]  # one transaction
    cfg = run(store.load_raw())
    assert cfg.tools.agent_timeout_secs == 601 and cfg.server.port == 15000
    assert list(ledger.backend.secrets()) == []
    assert ledger.verify().ok
    assert ledger.replay() == ledger.head_state()


def test_each_event_of_a_group_gets_its_own_conflict_check(pg_url):
    store = new_store(pg_url)
    seen = store.ledger.head_state().seq + 1  # the head once the blocker has committed
    first, second = grouped(store, pg_url, [(increment, {"expected_seq": seen}),
                                            (increment, {"expected_seq": seen})])
    assert first.error is None and first.commit is not None and first.commit.seq == seen + 1
    assert isinstance(second.error, ConflictError)
    assert store.ledger.verify().ok


def test_a_group_signs_its_last_stored_event(pg_url):
    store = new_store(pg_url)
    store.ledger.voucher.every = 1  # a checkpoint every transaction: the group's is due
    outs = grouped(store, pg_url, [(increment, {}), (increment, {})])
    last = max(o.commit.seq for o in outs if o.commit is not None)
    report = store.ledger.verify(expect_key=store.signing_key_fingerprint())
    assert report.ok and report.signed_seq == last


def test_threads_and_stores_of_one_process_lose_nothing(pg_url, pg):
    first = new_store(pg_url)
    stores = [first] + [PostgresConfigStore(pg_url, schema=first.pg.schema, pool_size=2)
                        for _ in range(3)]
    assert len({id(s.ledger._committer) for s in stores}) == 1  # one group per schema
    threads_per_store, each = 2, 15
    errors: list[BaseException] = []

    def writer(store: PostgresConfigStore) -> None:
        try:
            for _ in range(each):
                store.ledger.update_typed(increment, actor="thread")
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=writer, args=(s,)) for s in stores
               for _ in range(threads_per_store)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(PATIENCE_S * 4)
    assert not errors
    total = len(workers) * each
    for store in stores:  # every store sees every write
        assert run(store.load_raw()).tools.agent_timeout_secs == 600 + total
    report = first.ledger.verify()
    assert report.ok and report.events == 1 + total
    assert first.ledger.replay() == stores[-1].ledger.head_state()
    for store in stores[1:]:
        store.pg.close()


def test_async_tasks_lose_nothing(pg_url):
    store = new_store(pg_url)

    async def burst() -> list[Commit]:
        return await asyncio.gather(*[store.update_raw(increment, actor="task")
                                      for _ in range(40)])

    commits = run(burst())
    assert sorted(c.seq for c in commits) == list(range(2, 42))
    assert run(store.load_raw()).tools.agent_timeout_secs == 640
    assert store.ledger.verify().ok


# -- the append lock -----------------------------------------------------------------

def test_appends_serialize_on_the_advisory_append_lock(pg_url, pg):
    import psycopg

    store = new_store(pg_url, busy_timeout=0.2)
    run(store.update_raw(increment))  # this process has seen the head
    # another writer (of this ledger, or a tool following the rule) holds the lock; it
    # lets go by itself after a minute, so a writer that ignored the lock would succeed
    # and fail the raises below instead of hanging the test
    pg.execute("BEGIN")
    pg.execute("SELECT pg_advisory_xact_lock(%s)", (store.pg.append_lock,))
    released = threading.Lock()

    def let_go() -> None:
        with released:
            pg.execute("ROLLBACK")

    holder = threading.Timer(60.0, let_go)
    holder.start()
    try:
        with pytest.raises(StoreBusyError):  # the one-statement try
            store.ledger.update_typed(increment, wait=False)
        with pytest.raises(StoreBusyError, match="locked by another writer"):
            store.ledger.update_typed(increment)  # waited its busy timeout, no longer
    finally:
        holder.cancel()
        with released:
            if pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                pg.execute("ROLLBACK")
    assert run(store.load_raw()).tools.agent_timeout_secs == 601  # nothing went in
    assert store.ledger.update_typed(increment).appended
    assert store.ledger.verify().ok


def test_the_head_under_the_lock_is_the_logs_last_event(pg_url, pg):
    """The head row is derived: a locked writer reads the log's last event, and a head
    row that disagrees with it stops the write, named."""
    from ledger.errors import StoreError

    store = new_store(pg_url)
    for _ in range(3):
        run(store.update_raw(increment))
    old = store.ledger.backend.record(2)
    assert old is not None
    pg.execute(f'UPDATE "{store.pg.schema}".ledger_head SET seq = %s, hash = %s, ts = %s',
               (old.seq, old.hash, old.ts))
    fresh = PostgresConfigStore(pg_url, schema=store.pg.schema, pool_size=1)
    # a keyed open refuses it first (its head MAC names an event after the head row);
    # a writer without the key meets the locked append's guard
    with pytest.raises(StoreError, match=r"head row (does not match the last event|is "
                                         r"behind the log)"):
        fresh.ledger.update_typed(increment)
    assert fresh.ledger.backend.seq_bounds() == (4, 1, 4)  # nothing went in
    fresh.pg.close()


def test_a_server_side_savepoint_undoes_only_its_scope(pg_url):
    """A savepoint scope that had to send its statements (a step needing an answer at
    once) is rolled back on the server, and the transaction goes on."""
    store = new_store(pg_url)
    backend = store.pg
    def failing_scope(txn: Any) -> None:
        with txn.savepoint():
            txn.put_secret("undone", b"sealed-2", 1)
            assert txn.shred_secret("kept", 1)  # sends what is queued, inside the scope
            txn.set_meta("probe", "inside")
            raise RuntimeError("the scope fails")

    with backend.write() as txn:
        txn.put_secret("kept", b"sealed-1", 1)
        with pytest.raises(RuntimeError, match="the scope fails"):
            failing_scope(txn)
        assert txn.get_meta("probe") is None
        with txn.savepoint():  # type: ignore[attr-defined]
            txn.set_meta("probe", "after")
    assert [(r.ref, r.sealed) for r in backend.secrets()] == [("kept", b"sealed-1")]
    assert backend.get_meta("probe") == "after"
