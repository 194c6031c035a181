"""PostgreSQL (figure 10), when a DSN is given (`--pg DSN` or LEDGER_TEST_PG_URL):

- `await store.update_raw(fn)` on `PostgresConfigStore` against the fastest honest raw
  psycopg loop: one INSERT of an event-shaped row per transaction, as one autocommit
  statement (one round trip, server-side prepared), on the same server and DSN; in the
  same alternation, two sides that split the difference (the note of 10a): the
  ledger's own one-statement append (`Sql.append_one_signed`: the event, the head row,
  the head MAC, the notification) sent by raw psycopg the same way, and the synchronous
  core (`ledger.update_typed` in the calling thread, as `run_write`'s worker runs it);
- rounds of one and of four writer processes on one ledger (as in figure 8), with the
  lost-update check;
- group commit on PostgreSQL (issue 16): 8 threads sharing one store, and 8 stores on
  one schema with one thread each, against one writer (`ledger.update_typed`, the
  synchronous core the async stores run in worker threads), as figures i16d/i16e do on
  SQLite; the final value and the chain are checked.

Everything lives in throwaway schemas that are dropped at the end.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

from ledger.errors import StoreBusyError

from benchmarks.harness import Row, Side, Target, alternate, fmt_rate, fmt_time
from benchmarks.inprocess import THREADS, threads_side
from benchmarks.profiling import profile_misses
from benchmarks.workspace import (
    ACTOR,
    DOCS_EXAMPLE,
    Ctx,
    Skip,
    aio,
    async_block,
    fixture_doc,
)
from benchmarks.writers import WRITERS, WriterPool, check_no_lost_updates, compare
from benchmarks.writes import PAYLOAD

STORES = 8  # stores on one schema (each with its own pool of 2 connections)


def rows() -> list[Row]:
    return [
        Row("10a", "PostgreSQL `update_raw` / raw psycopg one row per transaction (same "
            "server): rate ratio", Target(">=", 0.8)),
        Row("10b", f"PostgreSQL, {WRITERS} writer processes: total rate / one writer process; "
            "lost updates", Target("report", text="report the rate; zero lost updates")),
        Row("10c", f"PostgreSQL, {THREADS} threads sharing one store / one writer (group "
            "commit): rate ratio", Target("report", text="report the rate; zero lost updates")),
        Row("10d", f"PostgreSQL, {STORES} stores on one schema in one process, one thread "
            "each / one writer (group commit): rate ratio",
            Target("report", text="report the rate; zero lost updates")),
    ]


def _increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


class AppendStatement:
    """The ledger's optimistic append statement alone, sent the way the raw side sends
    its INSERT (one prepared autocommit statement per event), on a ledger schema of its
    own: what the server does per `update_raw`, without the engine's Python or the hop
    to a worker thread. The hashes are stand-ins (the statement only checks the link),
    the MAC value is as long as a real one."""

    def __init__(self, dsn: str, schema: str) -> None:
        import psycopg
        from ledger.backends.base import HEAD_MAC
        from ledger.backends.pg_sql import ENGINE_GUC
        from ledger.backends.postgres import PostgresBackend

        backend = PostgresBackend(dsn, schema=schema, pool_size=1)
        self.sql = backend._sql.append_one_signed
        head = backend.head()
        backend.close()
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(f"SET {ENGINE_GUC} = 'on'")  # as the engine's sessions do
        self.seq, self.hash = head.seq, bytes(head.hash)
        self.meta_key = HEAD_MAC

    def loop(self, n: int) -> float:
        execute, sql = self.conn.execute, self.sql
        t0 = time.perf_counter()
        for _ in range(n):
            seq = self.seq + 1
            new = seq.to_bytes(32, "big")
            row = execute(sql, {"seq": seq, "ts": seq, "actor": ACTOR, "reason": "",
                                "source": "api", "kind": "change", "payload": PAYLOAD,
                                "prev_hash": self.hash, "hash": new,
                                "meta_key": self.meta_key, "meta_value": "m" * 140},
                          prepare=True).fetchone()
            if row is None:
                raise RuntimeError("the append statement wrote nothing")
            self.seq, self.hash = seq, new
        return time.perf_counter() - t0


class RawPsycopg:
    def __init__(self, dsn: str, schema: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(f"CREATE SCHEMA {schema}")
        self.table = f"{schema}.events"
        self.conn.execute(
            f"CREATE TABLE {self.table} (seq bigint PRIMARY KEY, ts bigint NOT NULL, "
            "actor text NOT NULL, reason text NOT NULL, source text NOT NULL, kind text NOT "
            "NULL, payload bytea NOT NULL, prev_hash bytea NOT NULL, hash bytea NOT NULL)")
        self.sql = f"INSERT INTO {self.table} VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        self.seq = 0

    def loop(self, n: int) -> float:
        execute, sql = self.conn.execute, self.sql
        t0 = time.perf_counter()
        for _ in range(n):
            self.seq += 1
            execute(sql, (self.seq, self.seq, ACTOR, "", "api", "change", PAYLOAD, b"p" * 32,
                          b"h" * 32), prepare=True)
        return time.perf_counter() - t0


def round_trips(store: Any, n: int) -> float:
    """Round trips per `update_raw` of `store` over `n` writes, counted in libpq's trace
    of its writer connection (a Sync ends an extended-protocol exchange, a Query is a
    simple one): 1 when every write takes the one-statement optimistic append. A
    regression to the locked way (as in last session's run) shows here, not as Python."""
    from psycopg import pq

    writer = store.pg._writer
    if writer is None:  # no writer connection kept (pool_size 1)
        return float("nan")
    pgconn = writer[0].pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            async_block(lambda: store.update_raw(_increment, actor=ACTOR))(n)
        finally:
            pgconn.untrace()
        trace.seek(0)
        sent = [line.split("\t")[2].split(" ")[0] for line in trace.read().splitlines()
                if line.startswith("F\t")]
    return sum(1 for m in sent if m in ("Sync", "Query")) / n


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    dsn = ctx.pg_dsn
    if not dsn:
        raise Skip("no PostgreSQL DSN given (--pg DSN or LEDGER_TEST_PG_URL; "
                   "scripts/pg-test-server starts a throwaway server)")
    try:
        from ledger.stores.postgres_store import PostgresConfigStore
    except ImportError as err:
        raise Skip(f"the PostgreSQL backend cannot be imported: {err}") from err
    import psycopg

    schema = f"bench_{os.getpid()}"
    raw = RawPsycopg(dsn, f"{schema}_raw")
    version = raw.conn.info.server_version  # e.g. 150018 for 15.18
    ctx.machine.append(("PostgreSQL server", f"{version // 10000}.{version % 10000}"))
    try:
        _measure(ctx, rows_by_fig, dsn, schema, raw, PostgresConfigStore)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in (schema, f"{schema}_raw", f"{schema}_stmt", f"{schema}_one",
                         f"{schema}_threads", f"{schema}_stores"):
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        raw.conn.close()


def _measure(ctx: Ctx, rows: dict[str, Row], dsn: str, schema: str, raw: RawPsycopg,
             store_class: Any) -> None:
    store = store_class(dsn, schema=schema)
    aio(store.save_raw(fixture_doc(DOCS_EXAMPLE), actor=ACTOR, source="import"))
    sizes = ctx.sizes
    ledger_side = Side("ledger", async_block(lambda: store.update_raw(_increment, actor=ACTOR)),
                       sizes.write_block)
    statement = AppendStatement(dsn, f"{schema}_stmt")

    def core(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            try:  # as run_write's worker does: the one-statement try, then locked
                store.ledger.update_typed(_increment, actor=ACTOR, wait=False)
            except StoreBusyError:
                store.ledger.update_typed(_increment, actor=ACTOR, wait=True)
        return time.perf_counter() - t0

    try:
        alt = alternate([Side("raw", raw.loop, sizes.write_block),
                         Side("statement", statement.loop, sizes.write_block),
                         Side("core", core, sizes.write_block), ledger_side],
                        sizes.write_rounds)
    finally:
        statement.conn.close()
    t = {name: alt.median(name) for name in ("raw", "statement", "core", "ledger")}
    trips = round_trips(store, 50)
    row = rows["10a"]
    row.measured = (f"ledger {fmt_rate(alt.rate('ledger'))} ({fmt_time(t['ledger'])}/op), "
                    f"raw psycopg {fmt_rate(alt.rate('raw'))} ({fmt_time(t['raw'])}/op)")
    statement_ratio = statistics.median(alt.speedups("statement", "raw"))
    core_ratio = statistics.median(alt.speedups("core", "raw"))
    budget = t["raw"] / 0.8  # the target's time per update
    row.judge_rounds(alt.speedups("ledger", "raw"), note_if_missed=(
        f"{trips:.2f} round trips per update (libpq's trace: 1 is the one-statement "
        "append; the locked way is 2-3); "
        f"per update, medians of the same rounds: the ledger's append statement alone "
        f"(event, head row, head MAC, notify; sent raw) {fmt_time(t['statement'])} "
        f"({statement_ratio:.2f}× raw); the synchronous core {fmt_time(t['core'])} "
        f"({core_ratio:.2f}×: the engine's Python "
        f"+{fmt_time(t['core'] - t['statement'])}); async "
        f"+{fmt_time(t['ledger'] - t['core'])} more (the hop to the worker thread and "
        f"back). What limits it: 0.8× allows {fmt_time(budget)} per update; the append "
        "statement alone, which every update sends (its head row, MAC row, lock and "
        f"notification are the chain's guards), takes {fmt_time(t['statement'])}, leaving "
        f"{fmt_time(max(0.0, budget - t['statement']))} for the engine's Python and the "
        f"hop, which take {fmt_time(t['ledger'] - t['statement'])}; see the profile"))

    profile_misses(ctx, rows, {"10a": ledger_side})
    first = aio(store.load_raw()).tools.agent_timeout_secs
    pool = WriterPool("postgres", dsn, schema)
    writers = compare(pool, ctx)
    lost = check_no_lost_updates(lambda: aio(store.load_raw()).tools.agent_timeout_secs,
                                 first, pool, store.ledger.verify)
    row = rows["10b"]
    row.measured = (f"{WRITERS} writers {fmt_rate(writers.rate('many'))} total, one writer "
                    f"{fmt_rate(writers.rate('one'))}; {lost}")
    row.judge_rounds(writers.speedups("many", "one"))
    if lost.startswith("LOST"):
        row.status, row.note = "MISS", lost
    aio(store.close())
    _group_commit(ctx, rows, dsn, schema, store_class)


def _group_commit(ctx: Ctx, rows: dict[str, Row], dsn: str, schema: str,
                  store_class: Any) -> None:
    """10c/10d: writers of one process commit in groups (one transaction per group)."""
    block = ctx.sizes.write_block * 2
    start = 600
    made: list[Any] = []

    def new(name: str, fresh: bool) -> Any:
        store = store_class(dsn, schema=f"{schema}_{name}", pool_size=2)
        made.append(store)
        if fresh:
            aio(store.save_raw(fixture_doc(DOCS_EXAMPLE), actor=ACTOR, source="import"))
        return store

    try:
        one, shared, first = new("one", True), new("threads", True), new("stores", True)
        stores = [first] + [new("stores", False) for _ in range(STORES - 1)]
        lone = threads_side("one", [one.ledger], block)
        alt_threads = alternate([lone, threads_side("threads", [shared.ledger] * THREADS,
                                                    block)], ctx.sizes.write_rounds)
        alt_stores = alternate([lone, threads_side("stores", [s.ledger for s in stores],
                                                   block)], ctx.sizes.write_rounds)
        for fig, name, alt, store, what in (("10c", "threads", alt_threads, shared,
                                              f"{THREADS} threads"),
                                             ("10d", "stores", alt_stores, first,
                                              f"{STORES} stores")):
            final = aio(store.load_raw()).tools.agent_timeout_secs
            report = store.ledger.verify()
            row = rows[fig]
            row.measured = (f"{what} {fmt_rate(alt.rate(name))}, one writer "
                            f"{fmt_rate(alt.rate('one'))}; {report.events:,} events, chain "
                            f"{'verifies' if report.ok else 'BROKEN'}")
            row.judge_rounds(alt.speedups(name, "one"))
            # every increment is one event after the import (event 1)
            if not report.ok or final - start != report.events - 1:
                row.status, row.note = "MISS", (f"LOST updates or a broken chain: "
                                                f"{final - start} increments, "
                                                f"{report.events - 1} events")
    finally:
        for store in made:
            aio(store.close())
