"""Group commit when one member's failure is not its own (issue 16, review round 3).

A member of a group can fail in a way that undoes more than its savepoint: SQLite rolls
back the WHOLE transaction on a trigger's RAISE(ROLLBACK) (and may on SQLITE_FULL,
IOERR, BUSY, NOMEM). Then nothing of the group was written, and every caller must be
told so; nothing may be committed afterwards in autocommit mode, and no head MAC may
vouch for a head that does not exist. A member whose `fn` raises a BaseException
(KeyboardInterrupt, SystemExit, another library's cancellation) fails only itself.

Groups are formed deterministically (the first writer's `fn` holds its transaction
until the others are queued), never by timing. Real SQLite files, real threads.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.errors import StoreError

PATIENCE_S = 120.0  # a safety net against a hung test, never a measured time


def _bump(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


class _Abort(BaseException):
    """What cancellation scopes of other libraries raise (gevent's Timeout, trio's
    Cancelled), or KeyboardInterrupt / SystemExit in a caller's fn."""


def _abort(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1000
    raise _Abort("this caller's fn was interrupted")


def _seed(db: Path) -> None:
    async def go() -> None:
        st = SqliteConfigStore(db)
        await st.save_raw({"tools": {"agent_timeout_secs": 0}}, actor="setup")
        await st.close()

    asyncio.run(go())


def _poison_trigger(db: Path) -> None:
    """A foreign trigger that rolls back the whole transaction for one reason."""
    c = apsw.Connection(str(db))
    c.execute("CREATE TRIGGER evil BEFORE INSERT ON ledger_events WHEN NEW.reason = "
              "'poison' BEGIN SELECT RAISE(ROLLBACK, 'a foreign trigger'); END")
    c.close()


def _wait_for(pred: Any) -> None:
    event = threading.Event()
    for _ in range(int(PATIENCE_S * 1000)):
        if pred():
            return
        event.wait(0.001)
    raise AssertionError("gave up waiting (a hung test, not a timing assertion)")


def _group_of(led: Any, callers: list[tuple[str, Any, str]]) -> dict[str, Any]:
    """Commit `callers` (name, fn, reason) as one group of `led`'s committer, in that
    order: a first write ("hold") is held inside its fn while the others queue."""
    committer = led._committer
    entered, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def hold(cfg: Any) -> None:
        entered.set()
        assert release.wait(PATIENCE_S)
        cfg.tools.agent_timeout_secs += 1

    def call(name: str, fn: Any, reason: str) -> None:
        try:
            results[name] = led.update_typed(fn, reason=reason)
        except BaseException as err:  # the caller's outcome, checked by the test
            results[name] = err

    threads = [threading.Thread(target=call, args=("hold", hold, "hold"))]
    threads[0].start()
    assert entered.wait(PATIENCE_S)
    for i, (name, fn, reason) in enumerate(callers):
        t = threading.Thread(target=call, args=(name, fn, reason))
        t.start()
        threads.append(t)
        _wait_for(lambda i=i: len(committer._queue) == i + 1)
    release.set()
    for t in threads:
        t.join(PATIENCE_S)
    return results


def _check_truth(db: Path, results: dict[str, Any], names: tuple[str, ...]) -> None:
    """Every caller told "committed" has its event in the log, every caller told
    "error" has not; the counter equals the increments; verify and the head MAC agree."""
    st = SqliteConfigStore(db)
    reasons = {e.seq: e.reason for e in st.ledger.events()}
    value = asyncio.run(st.load_raw()).tools.agent_timeout_secs
    for name in names:
        told_ok = not isinstance(results[name], BaseException)
        assert (name in reasons.values()) == told_ok, (name, results, reasons)
    assert "poison" not in reasons.values()
    assert value == len(reasons) - 1  # every increment event, no other
    assert st.ledger.verify().ok
    assert st.ledger.head_problem() is None, st.ledger.head_problem()
    asyncio.run(st.close())


@pytest.mark.parametrize("order", ["poison-first", "poison-middle", "poison-last"])
def test_whole_transaction_rollback_inside_a_group_tells_every_caller_the_truth(
        tmp_path: Path, order: str) -> None:
    """Poison first: the next caller's event used to be committed in autocommit while
    its caller was told "cannot commit - no transaction is active" (a retry applies it
    twice). Poison last: the earlier members' events were rolled back but the head MAC
    was still written for them (verify: a false "log was rewritten" alarm)."""
    db = tmp_path / "g.db"
    _seed(db)
    _poison_trigger(db)
    st = SqliteConfigStore(db)
    callers = {"poison-first": ["poison", "a", "b"], "poison-middle": ["a", "poison", "b"],
               "poison-last": ["a", "b", "poison"]}[order]
    results = _group_of(st.ledger, [(n, _bump, n) for n in callers])
    assert isinstance(results["poison"], BaseException)
    # the rollback undid the whole group ("hold" led the group before it): every
    # caller is told so, none is told "done"
    for name in ("a", "b"):
        assert isinstance(results[name], StoreError), (name, results[name])
        assert "nothing" in str(results[name]), results[name]
    _check_truth(db, results, ("hold", "a", "b"))
    # the ledger goes on: the next group commits and is vouched for
    after = _group_of(st.ledger, [("c", _bump, "c")])
    assert not any(isinstance(r, BaseException) for r in after.values()), after
    _check_truth(db, after, ("hold", "c"))
    asyncio.run(st.close())


def test_whole_transaction_rollback_of_a_lone_writer(tmp_path: Path) -> None:
    """A group of one (no savepoint): the caller is told, nothing is written, the head
    stays vouched for, and the next write commits."""
    db = tmp_path / "one.db"
    _seed(db)
    _poison_trigger(db)
    st = SqliteConfigStore(db)
    with pytest.raises(StoreError):
        st.ledger.update_typed(_bump, reason="poison")
    results: dict[str, Any] = {"poison": StoreError("x")}
    results["ok"] = st.ledger.update_typed(_bump, reason="ok")
    _check_truth(db, results, ("ok",))
    asyncio.run(st.close())


def test_sqlite_txn_refuses_statements_once_its_transaction_ended(tmp_path: Path) -> None:
    """Defence in depth: after a whole-transaction rollback (a caller that swallowed the
    error and goes on), and after the `write()` block, the txn object refuses to write
    instead of writing in autocommit."""
    from ledger.backends.sqlite import SqliteBackend

    db = tmp_path / "t.db"
    _seed(db)
    c = apsw.Connection(str(db))
    c.execute("CREATE TRIGGER evil BEFORE INSERT ON ledger_meta WHEN NEW.key = 'poison' "
              "BEGIN SELECT RAISE(ROLLBACK, 'a foreign trigger'); END")
    c.close()
    backend = SqliteBackend(db)
    refused: list[str] = []

    def swallow_then_write() -> None:
        with backend.write() as txn:
            txn.set_meta("before", "1")
            with pytest.raises(apsw.Error):  # the caller swallows the rollback, goes on
                txn.set_meta("poison", "1")
            for step in (lambda: txn.set_meta("after", "1"), lambda: txn.append([]),
                         txn.savepoint):
                with pytest.raises(StoreError, match="no longer open") as err:
                    step()
                refused.append(str(err.value))

    with pytest.raises(StoreError, match="rolled back"):  # not "no transaction is active"
        swallow_then_write()
    assert len(refused) == 3
    assert backend.get_meta("before") is None and backend.get_meta("after") is None
    with backend.write() as txn:
        txn.set_meta("inside", "1")
    with pytest.raises(StoreError, match="no longer open"):
        txn.set_meta("outside", "1")
    assert backend.get_meta("inside") == "1" and backend.get_meta("outside") is None
    backend.close()


def test_a_base_exception_in_one_callers_fn_fails_only_that_caller(tmp_path: Path) -> None:
    """A fn raising a BaseException used to escape its member's savepoint, roll back the
    whole group and be raised to every caller of the group (the leader included)."""
    db = tmp_path / "b.db"
    _seed(db)
    st = SqliteConfigStore(db)
    results = _group_of(st.ledger, [("before", _bump, "before"), ("abort", _abort, "abort"),
                                    ("after", _bump, "after")])
    assert isinstance(results["abort"], _Abort)
    for name in ("hold", "before", "after"):
        assert not isinstance(results[name], BaseException), (name, results[name])
    reasons = [e.reason for e in st.ledger.events()]
    assert {"hold", "before", "after"} <= set(reasons) and "abort" not in reasons
    assert st.ledger.verify().ok and st.ledger.head_problem() is None
    asyncio.run(st.close())


def test_a_base_exception_in_the_leaders_own_fn_fails_only_the_leader(tmp_path: Path) -> None:
    """The leader's own fn interrupted: the others of its group still commit, and the
    leader's thread gets its own exception."""
    db = tmp_path / "l.db"
    _seed(db)
    st = SqliteConfigStore(db)
    led = st.ledger
    entered, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def first(cfg: Any) -> None:  # a group of one, holding the lock until the next queue
        entered.set()
        assert release.wait(PATIENCE_S)
        cfg.tools.agent_timeout_secs += 1

    def call(name: str, fn: Any) -> None:
        try:
            results[name] = led.update_typed(fn, reason=name)
        except BaseException as err:  # the caller's outcome, checked below
            results[name] = err

    threads = [threading.Thread(target=call, args=("first", first))]
    threads[0].start()
    assert entered.wait(PATIENCE_S)
    for i, (name, fn) in enumerate([("abort", _abort), ("other", _bump)]):
        t = threading.Thread(target=call, args=(name, fn))
        t.start()
        threads.append(t)
        _wait_for(lambda i=i: len(led._committer._queue) == i + 1)
    release.set()
    for t in threads:
        t.join(PATIENCE_S)
    assert isinstance(results["abort"], _Abort)
    assert not isinstance(results["other"], BaseException), results["other"]
    reasons = [e.reason for e in led.events()]
    assert "other" in reasons and "abort" not in reasons
    asyncio.run(st.close())


@pytest.mark.skipif(not os.environ.get("LEDGER_TEST_PG_URL"), reason="no PostgreSQL")
@pytest.mark.parametrize("order", ["poison-first", "poison-last"])
def test_postgres_group_with_a_failing_member_tells_every_caller_the_truth(
        tmp_path: Path, order: str) -> None:
    """PostgreSQL aborts the transaction on an error; its pipelined group must still
    tell every caller the truth (a failing member undoes only itself)."""
    import psycopg

    from ledger.stores.postgres_store import PostgresConfigStore

    url = os.environ["LEDGER_TEST_PG_URL"]
    schema = f"gcf_{secrets.token_hex(4)}"

    async def seed() -> None:
        st = PostgresConfigStore(url, schema=schema)
        await st.save_raw({"tools": {"agent_timeout_secs": 0}}, actor="setup")
        await st.close()

    asyncio.run(seed())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"""CREATE FUNCTION {schema}.evil() RETURNS trigger AS $$
            BEGIN IF NEW.reason = 'poison' THEN RAISE EXCEPTION 'a foreign trigger'; END IF;
            RETURN NEW; END $$ LANGUAGE plpgsql""")
        conn.execute(f"CREATE TRIGGER evil BEFORE INSERT ON {schema}.ledger_events "
                     f"FOR EACH ROW EXECUTE FUNCTION {schema}.evil()")
    st = PostgresConfigStore(url, schema=schema)
    callers = ["poison", "a"] if order == "poison-first" else ["a", "poison"]
    results = _group_of(st.ledger, [(n, _bump, n) for n in callers])
    asyncio.run(st.close())
    st2 = PostgresConfigStore(url, schema=schema)
    reasons = {e.seq: e.reason for e in st2.ledger.events()}
    value = asyncio.run(st2.load_raw()).tools.agent_timeout_secs
    assert isinstance(results["poison"], BaseException)
    for name in ("hold", "a"):
        told_ok = not isinstance(results[name], BaseException)
        assert (name in reasons.values()) == told_ok, (name, results, reasons)
    assert "poison" not in reasons.values()
    assert value == len(reasons) - 1
    assert st2.ledger.verify().ok
    assert st2.ledger.head_problem() is None, st2.ledger.head_problem()
    asyncio.run(st2.close())
