"""Issue 13, the PostgreSQL findings (4, 5, 11), on a real server (LEDGER_TEST_PG_URL),
with the stores' pools at their smallest (pool_size=1) where hygiene matters."""

from __future__ import annotations

import pytest

from ledger import SqliteConfigStore
from ledger.errors import StoreError, VerificationError
from ledger.ops.transfer import copy_ledger
from ledger.schema import MoltisConfig
from ledger.stores.postgres_store import PostgresConfigStore
from tests.conftest import run
from tests.pg import fresh_pg_store

pytestmark = pytest.mark.postgres  # counted, and never skipped under CI=true


def set_port(port: int):
    def fn(cfg: MoltisConfig) -> None:
        cfg.server.port = port
    return fn


def fill(store, n: int, start: int = 1000) -> None:
    for i in range(n):
        run(store.update_raw(set_port(start + i), actor="t", reason=f"r{i}"))


def test_finding4_a_head_row_moved_back_is_never_served_silently(pg_url):
    import psycopg

    store = fresh_pg_store(pg_url)
    fill(store, 5)
    assert run(store.load_raw()).server.port == 1004
    old = store.ledger.backend.record(3)
    assert old is not None
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'UPDATE "{store.pg.schema}".ledger_head SET seq = %s, hash = %s, ts = %s',
                     (old.seq, old.hash, old.ts))
    # a process that served seq 5 refuses the older head, loudly
    with pytest.raises(StoreError, match="moved back"):
        run(store.load_raw())
    # verify names it
    report = PostgresConfigStore(pg_url, schema=store.pg.schema).ledger.verify()
    assert not report.ok and "head" in (report.problem or "")
    # a write says what is wrong instead of a raw duplicate-key error
    with pytest.raises(StoreError, match="head row is behind the log"):
        fill(PostgresConfigStore(pg_url, schema=store.pg.schema), 1, start=9000)


def test_finding5_no_acknowledged_write_is_lost_after_a_shred(pg_url):
    store = fresh_pg_store(pg_url, pool_size=1)
    run(store.providers.set("openai", api_key="sk-live-1"))
    fill(store, 1)
    fp = next(c.secret.fp for ev in store.ledger.events() for c in ev.changes if c.secret)
    commit = store.ledger.shred(store.ledger.refs_with_fingerprint(fp), reason="leaked")
    assert commit.appended
    fill(store, 2, start=5000)
    fresh = PostgresConfigStore(pg_url, schema=store.pg.schema, pool_size=1)
    assert run(fresh.load_raw()).server.port == 5001
    assert [r.seq for r in fresh.ledger.backend.read()] == [1, 2, 3, 4, 5]
    assert fresh.ledger.verify().ok


def test_finding11_a_sqlite_to_postgres_copy_is_all_or_nothing(pg_url, tmp_path):
    from ledger.backends.sqlite import SqliteBackend
    from ledger.core.chain import link
    from ledger.core.events import Record

    db = tmp_path / "moltis.db"
    # the same 1,500 events as a default store writes, without an fsync each (set-up)
    fill(SqliteConfigStore(db, synchronous="NORMAL"), 1500)
    # a correctly chained event with a NUL in its reason, as a ledger written before
    # the text rule could hold (SQLite stores it; PostgreSQL cannot)
    backend = SqliteBackend(db)
    with backend.write() as txn:
        head = txn.head()
        payload = b'{"changes":[{"op":"set","path":["server","port"],"value":1}]}'
        reason = "a\x00b"
        h = link(head.hash, head.seq + 1, head.ts, "t", reason, "api", "change", payload)
        txn.append([Record(head.seq + 1, head.ts, "t", reason, "api", "change", payload,
                           head.hash, h)])
    target = fresh_pg_store(pg_url)
    with pytest.raises(VerificationError, match="NUL"):
        copy_ledger(backend, target.ledger.backend)
    assert target.ledger.backend.head().seq == 0  # nothing, not 1000 of 1501


def test_a_bundle_taken_while_writers_run_verifies(pg_url, tmp_path):
    import io

    from ledger.ops.bundle import write_bundle

    store = fresh_pg_store(pg_url)
    fill(store, 3)
    other = PostgresConfigStore(pg_url, schema=store.pg.schema)
    read = store.ledger.backend.read

    def while_another_gateway_writes(*args, **kwargs):
        fill(other, 2, start=7000)  # lands after the header named the head
        return read(*args, **kwargs)

    store.ledger.backend.read = while_another_gateway_writes  # type: ignore[method-assign]
    out = io.StringIO()
    write_bundle(store.ledger, out)
    path = tmp_path / "b.bundle"
    path.write_text(out.getvalue())
    from ledger.ops.bundle import verify_bundle

    assert verify_bundle(path).ok
