"""Review B's PostgreSQL findings 1-3 on the advisory-lock append (LEDGER_TEST_PG_URL):
a stray event after the head row is never served, a secret written earlier in a group
commit can be read later in the same group, and a writer of an older version (which
serializes on the head row's lock) is waited for rather than reported as tampering.

Real PostgreSQL, real SQL from a second connection for the attacker and for the older
version's writer; no mocks."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import pytest

from ledger.core.chain import link
from ledger.core.events import Change, ChangePayload, encode_payload, now_us
from ledger.core.secret_refs import Secret
from ledger.errors import SecretDestroyedError, StoreError
from ledger.stores.postgres_store import PostgresConfigStore
from tests.conftest import run
from tests.pg import fresh_pg_store

pytestmark = pytest.mark.postgres  # counted, and never skipped under CI=true

PATIENCE_S = 30.0  # a safety net against a hung test, never a measured time


def increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def new_store(url: str, doc: dict[str, Any], **kw: Any) -> PostgresConfigStore:
    kw.setdefault("pool_size", 2)
    store: PostgresConfigStore = fresh_pg_store(url, **kw)
    run(store.save_raw(doc, actor="setup", source="import"))
    return store


def event_sql(schema: str) -> str:
    return (f'INSERT INTO "{schema}".ledger_events (seq, ts, actor, reason, source, kind, '
            "payload, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")


def event_after(seq: int, prev: bytes, actor: str, path: tuple[str, ...], value: Any
                ) -> tuple[Any, ...]:
    """An event linked to (seq, prev): the chain hash is unkeyed, anyone can make one."""
    payload = encode_payload(ChangePayload(changes=(Change("set", path, value),)))
    ts = now_us()
    h = link(prev, seq + 1, ts, actor, "", "api", "change", payload)
    return (seq + 1, ts, actor, "", "api", "change", payload, prev, h)


def forge_stray_event(url: str, schema: str, path: tuple[str, ...], value: Any) -> None:
    """Someone with SQL access but not the ledger key: an event after the head row,
    linked to the log's last hash, inserted with the engine's own session setting so the
    gap-free trigger lets it in. The head row, head MAC and signature are left alone."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        seq, prev, _ts = admin.execute(
            f'SELECT seq, hash, ts FROM "{schema}".ledger_head').fetchone()
        admin.execute("SET moltis_ledger.engine = 'on'")
        admin.execute(event_sql(schema), event_after(seq, bytes(prev), "mallory", path, value))


def test_a_stray_event_after_the_head_row_is_never_served(pg_url):
    """Finding 1: the locked write read the log's last event as the head and cached the
    state caught up on it before the head-row guard refused the write; reads then
    served the forged value. The lock message now reads the head row too, and a
    mismatch is refused before any head reaches the engine."""
    store = new_store(pg_url, {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 1}},
                      busy_timeout=2)
    store.ledger.update_typed(increment, actor="owner")
    forge_stray_event(pg_url, store.pg.schema, ("server", "port"), 6666)
    with pytest.raises(StoreError):  # refused (optimistic first try, then locked)
        run(store.update_raw(increment, actor="owner"))
    with pytest.raises(StoreError, match="head row"):  # refused (locked write)
        store.ledger.update_typed(increment, actor="owner")
    served = []
    for read in (store.load_raw, store.view, store.load_raw, store.view):
        try:
            served.append(run(read()).server.port)
        except StoreError:
            continue  # refusing to read is not serving the forgery
    assert 6666 not in served, f"the forged event is served: {served}"
    assert 13131 in served


def test_a_failed_commit_never_leaves_its_event_in_the_served_state(pg_url):
    """The engine adopts a write's state only once the commit succeeded. On PostgreSQL a
    locked write's statements travel with its COMMIT, so they can fail after the engine
    has folded the event: here a shred whose event the database refuses at COMMIT
    (a deferred trigger stands in for any failure at COMMIT). The uncommitted shred event must
    not stay cached: later reads serve the head that is stored."""
    import psycopg

    store = new_store(pg_url, {"providers": {"p": {"api_key": "sk-" + "a" * 32}}})
    ledger = store.ledger
    before = ledger.head_state()
    schema = store.pg.schema
    refs = [c.secret for ev in ledger.events() for c in ev.changes if c.secret is not None]
    assert refs
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE FUNCTION "{schema}".fixd_refuse() RETURNS trigger LANGUAGE '
                      "plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$")
        admin.execute(f'CREATE CONSTRAINT TRIGGER fixd_refuse AFTER INSERT ON "{schema}".'
                      "ledger_events DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                      f'EXECUTE FUNCTION "{schema}".fixd_refuse()')
    with pytest.raises(StoreError) as failed:
        ledger.shred([refs[0]], actor="owner")
    assert "refused at commit" in str(failed.value)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'DROP TRIGGER fixd_refuse ON "{schema}".ledger_events')
        stored = admin.execute(f'SELECT seq FROM "{schema}".ledger_head').fetchone()
    assert stored == (before.seq,)
    after = ledger.head_state()
    assert (after.seq, after.hash) == (before.seq, before.hash), (
        f"event {after.seq}, whose commit failed, is served as if it were stored")


def test_group_commit_a_secret_set_earlier_in_the_group_can_be_read(pg_url):
    """Finding 2: put_secret is queued until the COMMIT; a later request of the same
    group that opens that secret reads through the backend on the write connection,
    where the INSERT was never sent (SecretDestroyedError). Reads on the write
    connection now send what is queued first."""
    store = new_store(pg_url, {"providers": {"p": {"api_key": "sk-" + secrets.token_hex(16)}}},
                      busy_timeout=30, pool_size=4)
    failures: list[str] = []
    others: list[str] = []
    guard = threading.Lock()

    def setter(i: int) -> None:
        for _ in range(20):
            def fn(c: Any) -> None:
                c.providers["p"].api_key = Secret("sk-" + secrets.token_hex(16))
            try:
                store.ledger.update_typed(fn, actor=f"setter{i}")
            except Exception as err:
                with guard:
                    others.append(repr(err)[:200])

    def copier(i: int) -> None:
        for _ in range(20):
            def fn(c: Any) -> None:
                c.providers[f"copy{i}"] = {"api_key": c.providers["p"].api_key.reveal()}
            try:
                store.ledger.update_typed(fn, actor=f"copier{i}")
            except SecretDestroyedError as err:
                with guard:
                    failures.append(str(err)[:160])
            except Exception as err:
                with guard:
                    others.append(repr(err)[:200])

    threads = [threading.Thread(target=setter, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=copier, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE_S * 4)
    assert not others, others[:3]
    assert not failures, f"{len(failures)} of 60 reads of a just-written secret failed: " \
                         f"{failures[0]}"
    assert store.ledger.verify().ok


def test_group_commit_reads_see_meta_queued_earlier_in_the_group(pg_url):
    """Finding 2, meta: backend.get_meta inside a write sees what the transaction set."""
    store = new_store(pg_url, {"server": {"port": 13131}})
    seen: list[str | None] = []
    backend = store.pg

    class Undo(Exception):
        pass

    def write_then_undo() -> None:
        with backend.write() as txn:
            txn.set_meta("fixd_probe", "queued")
            seen.append(backend.get_meta("fixd_probe"))
            raise Undo  # rolled back: nothing of this reaches the ledger

    with pytest.raises(Undo):
        write_then_undo()
    assert seen == ["queued"]
    assert backend.get_meta("fixd_probe") is None


def test_a_write_racing_an_older_versions_writer_waits_for_it(pg_url):
    """Finding 3: a gateway of the previous version serializes on the head row's lock
    (`SELECT ... FROM ledger_head FOR UPDATE`, insert, move the row). A write of this
    version racing it used to fail its head-row guard as "tampered"; it now takes the
    head row's lock in its lock message too, waits for that commit and builds on it."""
    import psycopg

    store = new_store(pg_url, {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 1}},
                      busy_timeout=20)
    schema = store.pg.schema
    old = psycopg.connect(pg_url)  # the older version's writer: one transaction
    outcome: list[BaseException | None] = []
    try:
        seq, prev, _ = old.execute(
            f'SELECT seq, hash, ts FROM "{schema}".ledger_head FOR UPDATE').fetchone()

        def new_writer() -> None:
            try:
                store.ledger.update_typed(increment, actor="new-version")
                outcome.append(None)
            except BaseException as err:
                outcome.append(err)

        t = threading.Thread(target=new_writer)
        t.start()
        with psycopg.connect(pg_url, autocommit=True) as watch:  # until it queues behind
            deadline = time.monotonic() + PATIENCE_S
            while not watch.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE %s", (f'%"{schema}".ledger_head%',)).fetchone():
                assert time.monotonic() < deadline and t.is_alive(), outcome
                time.sleep(0.01)
        row = event_after(seq, bytes(prev), "old-version", ("server", "bind"), "0.0.0.0")
        old.execute("SET LOCAL moltis_ledger.engine = 'on'")
        old.execute(event_sql(schema), row)
        old.execute(f'UPDATE "{schema}".ledger_head SET seq = %s, hash = %s, ts = %s',
                    (row[0], row[8], row[1]))
        old.commit()
        t.join(PATIENCE_S)
        assert outcome, "the new writer never finished"
        assert outcome[0] is None, f"a legitimate concurrent write was refused: {outcome[0]}"
    finally:
        old.close()
    raw = run(store.load_raw())
    assert raw.server.bind == "0.0.0.0"  # built on the older writer's event
    assert raw.tools.agent_timeout_secs == 2
    assert store.ledger.verify_chain().ok  # one linear chain, no fork
    # The older writer here is raw SQL without the ledger key, so nothing vouches for its
    # event (issue 13: verify with the key fails an unvouched head); the operator's
    # explicit adopt, after checking, makes the whole ledger verify.
    assert not store.ledger.verify().ok
    store.ledger.sign_head(adopt=True)
    assert store.ledger.verify().ok
