"""Concurrent writers inside one process, and the event loop during writes (issue 16):

- 8 threads sharing one store, each doing single-key `update_raw` increments (the
  synchronous core, `ledger.update_typed`, which the async stores run in worker
  threads) / one thread doing the same number alone: rate ratio;
- 16 stores on one database file, one thread each / one writer: rate ratio;
- the event loop's worst lag (a ticker task on the loop) during a burst of async
  `update_raw` calls / one raw durable commit (raw apsw, WAL, FULL) on the same disk
  (the store's writes run in its writer thread, `ledger.stores.writer`).

All on SQLite FULL, docs example loaded; the final value and the chain are checked
after every side (no lost update, the chain verifies).
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import threading
import time
from typing import Any

from benchmarks.harness import Row, Side, Target, alternate, fmt_rate, fmt_time, percentile
from benchmarks.workspace import (
    ACTOR,
    DOCS_EXAMPLE,
    Ctx,
    aio,
    fixture_doc,
    scratch,
    sqlite_store,
)
from benchmarks.writes import RawApsw

THREADS = 8
STORES = 16
TASKS = 8  # concurrent tasks issuing the burst of writes on the loop


def rows() -> list[Row]:
    return [
        Row("i16d", f"{THREADS} threads sharing one store (`update_raw` increments, SQLite "
            "FULL) / one writer: rate ratio", Target(">=", 3.0)),
        Row("i16e", f"{STORES} stores on one database file in one process, one writer "
            "thread each / one writer: rate ratio", Target(">=", 2.0)),
        Row("i16f", f"worst event-loop lag (a ticker task) during a burst of async "
            f"`update_raw` calls ({TASKS} tasks writing in turn) / one raw durable commit "
            "(apsw, FULL): time ratio",
            Target("<=", 2.0)),
    ]


def _increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def _switches() -> int:
    """This process's context switches so far (voluntary and forced)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_nvcsw + use.ru_nivcsw


def threads_side(name: str, ledgers: list[Any], block: int,
                 switches: dict[str, list[float]] | None = None,
                 cpu: dict[str, list[float]] | None = None) -> Side:
    """`block` increments shared out among one thread per ledger (the same ledger may
    appear several times: threads sharing a store); `switches[name]` gets each block's
    context switches per increment, `cpu[name]` its process CPU seconds per increment
    (every thread's: what the GIL serializes)."""

    def run(n: int) -> float:
        each = max(1, n // len(ledgers))
        errors: list[BaseException] = []
        go = threading.Barrier(len(ledgers) + 1)

        def writer(ledger: Any) -> None:
            go.wait()
            try:
                for _ in range(each):
                    ledger.update_typed(_increment, actor=ACTOR)
            except BaseException as err:  # reported after the round
                errors.append(err)

        workers = [threading.Thread(target=writer, args=(led,)) for led in ledgers]
        for w in workers:
            w.start()
        go.wait()
        t0, csw, cpu0 = time.perf_counter(), _switches(), time.process_time()
        for w in workers:
            w.join()
        took = time.perf_counter() - t0
        spent = time.process_time() - cpu0
        if errors:
            raise errors[0]
        if switches is not None:
            switches.setdefault(name, []).append((_switches() - csw) / (each * len(ledgers)))
        if cpu is not None:
            cpu.setdefault(name, []).append(spent / (each * len(ledgers)))
        return took * n / (each * len(ledgers))  # per-op time as if exactly n were done

    return Side(name, run, block)


def _cpu_bound(cpu: dict[str, list[float]], name: str, one_wall: float, writers: int
               ) -> str:
    """The ceiling the measured CPU per event puts on a group-commit rate ratio: one
    writer's update is its CPU plus the commit's wait; in a group of `writers` the wait
    is shared, the CPU (all threads', under one GIL) is not."""
    many, alone = statistics.median(cpu[name]), statistics.median(cpu["one"])
    wait = max(0.0, one_wall - alone)
    bound = one_wall / (many + wait / writers)
    return (f"measured CPU per event (every thread's, medians): {fmt_time(many)} with "
            f"{writers} writers, {fmt_time(alone)} alone, whose update is "
            f"{fmt_time(one_wall)} (so {fmt_time(wait)} waiting for the commit): "
            f"(CPU alone + wait) / (CPU with {writers} + wait / {writers}) caps the ratio "
            f"at about {bound:.2f}× in this run (a quicker commit lowers the cap)")


def _check(store: Any, first: int, done: int) -> str:
    final = aio(store.load_raw()).tools.agent_timeout_secs
    report = store.ledger.verify()
    if final != first + done or not report.ok:
        raise RuntimeError(f"lost updates or a broken chain: {final} != {first + done}, "
                           f"{report.problem}")
    return f"0 lost, chain verifies ({report.events:,} events)"


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    from ledger import SqliteConfigStore

    sizes = ctx.sizes
    doc = fixture_doc(DOCS_EXAMPLE)
    block = sizes.write_block * 2
    one = sqlite_store(scratch("inproc-one.db"), doc)
    shared = sqlite_store(scratch("inproc-threads.db"), doc)
    path = scratch("inproc-stores.db")
    first_store = sqlite_store(path, doc)
    stores = [first_store] + [SqliteConfigStore(path) for _ in range(STORES - 1)]
    switches: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    sides = [
        threads_side("one", [one.ledger], block, switches, cpu),
        threads_side("threads", [shared.ledger] * THREADS, block, switches, cpu),
        threads_side("stores", [s.ledger for s in stores], block, cpu=cpu),
    ]
    # pairs alternate on their own: each side fsyncs, and a third database written in
    # the same rounds would slow both sides of a pair by a varying amount
    alt_threads = alternate([sides[0], sides[1]], sizes.write_rounds)
    alt_stores = alternate([sides[0], sides[2]], sizes.write_rounds)
    start = 600
    done = {"threads": 0, "stores": 0}
    for name, store in (("threads", shared), ("stores", first_store)):
        done[name] = aio(store.load_raw()).tools.agent_timeout_secs - start
    checks = {name: _check(store, start, done[name])
              for name, store in (("threads", shared), ("stores", first_store))}
    r = rows_by_fig["i16d"]
    r.measured = (f"{THREADS} threads {fmt_rate(alt_threads.rate('threads'))}, one writer "
                  f"{fmt_rate(alt_threads.rate('one'))}; {checks['threads']}")
    r.judge_rounds(alt_threads.speedups("threads", "one"), note_if_missed=(
        "group commit: groups are full (a new leader gathers the last group's writers, "
        "for at most one commit's time), so one fsync carries every writer's event; what "
        "is left is per event: the leader's Python for each event (typed edit and diff, "
        "encoding, hash link, fold) and each writer's way back into the queue, against "
        "one fsync shared by the group: the ratio is (work + fsync) / (work + fsync / "
        f"{THREADS}), and a cheap fsync (a quiet disk) lowers it; all of it runs under "
        "one GIL, and each event's caller must be woken and take the GIL back: "
        f"{statistics.median(switches['threads']):.1f} context switches per event with "
        f"{THREADS} threads against {statistics.median(switches['one']):.1f} for one "
        "writer (medians over the blocks); "
        + _cpu_bound(cpu, "threads", alt_threads.median("one"), THREADS)))
    r = rows_by_fig["i16e"]
    r.measured = (f"{STORES} stores {fmt_rate(alt_stores.rate('stores'))}, one writer "
                  f"{fmt_rate(alt_stores.rate('one'))}; {checks['stores']}")
    r.judge_rounds(alt_stores.speedups("stores", "one"), note_if_missed=(
        "group commit across stores: the leader builds every store's event on its own "
        "connection; as for i16d, the per-event Python (and each writer's way back into "
        "the queue) against one shared fsync bounds it; "
        + _cpu_bound(cpu, "stores", alt_stores.median("one"), STORES)))
    _loop_lag(ctx, rows_by_fig["i16f"], doc)
    for s in (one, shared, *stores):
        s.ledger.close()


def _loop_lag(ctx: Ctx, row: Row, doc: dict[str, Any]) -> None:
    """Per round: a burst of `burst` concurrent async update_raw calls with a ticker on
    the loop (its worst lag), then a block of raw durable commits (their mean). Once,
    alternated with those rounds, the same burst of raw apsw commits run through
    `asyncio.to_thread` (no ledger): the lag the machine, the GIL hand-off and the
    executor give with no Python work in the threads, the floor of any async API."""
    sizes = ctx.sizes
    burst = 100 if sizes.quick else 1000
    store = sqlite_store(scratch("inproc-loop.db"), doc)
    raw = RawApsw("inproc-raw.db")
    floor_raw = RawApsw("inproc-floor.db")
    floor_lock = threading.Lock()
    lags: list[float] = []
    every_tick: dict[str, list[float]] = {"ledger": [], "floor": []}

    def floor_commit() -> None:
        with floor_lock:  # one connection: its commits one at a time, as one writer
            floor_raw.commit_one()

    async def with_ticker(kind: str) -> float:
        worst = 0.0
        stop = False
        ticks = every_tick[kind]

        async def ticker() -> None:
            nonlocal worst
            while not stop:
                t0 = time.perf_counter()
                await asyncio.sleep(0)
                lag = time.perf_counter() - t0
                ticks.append(lag)
                worst = max(worst, lag)

        async def client() -> None:  # one of TASKS gateway requests writing in turn
            for _ in range(burst // TASKS):
                if kind == "ledger":
                    await store.update_raw(_increment, actor=ACTOR)
                else:
                    await asyncio.to_thread(floor_commit)

        tick = asyncio.ensure_future(ticker())
        await asyncio.gather(*[client() for _ in range(TASKS)])
        stop = True
        await tick
        return worst

    def lag_side(n: int) -> float:
        worst = aio(with_ticker("ledger"))
        lags.append(worst)
        return worst * n  # the harness divides by n

    floors: list[float] = []

    def floor_side(n: int) -> float:
        worst = aio(with_ticker("floor"))
        floors.append(worst)
        return worst * n

    sides = [Side("lag", lag_side, 1), Side("fsync", raw.loop, max(20, sizes.write_block // 2)),
             Side("floor", floor_side, 1)]
    alt = alternate(sides, max(3, sizes.rounds // 2))

    def spread(kind: str) -> str:
        ticks = every_tick[kind]
        return (f"median {fmt_time(percentile(ticks, 50))}, p99 {fmt_time(percentile(ticks, 99))}"
                f", p99.9 {fmt_time(percentile(ticks, 99.9))} over {len(ticks):,} ticks")

    row.measured = (f"worst lag {fmt_time(alt.median('lag'))} during {burst:,}-write bursts "
                    f"(worst of all rounds {fmt_time(max(lags))}; {spread('ledger')}); one raw "
                    f"durable commit {fmt_time(alt.median('fsync'))}; the same bursts of raw "
                    f"apsw commits through asyncio.to_thread: worst {fmt_time(alt.median('floor'))}"
                    f" ({spread('floor')})")
    from ledger.stores.writer import GROUP_LIMIT

    over_floor = statistics.median(alt.ratios("lag", "floor"))
    row.judge_rounds(alt.ratios("lag", "fsync"), note_if_missed=(
        "the worst tick is set by the machine and the GIL: the raw commits run through "
        "asyncio.to_thread, with no ledger code at all, show a worst lag "
        f"{alt.median('floor') / alt.median('fsync'):.1f}x one commit in the same rounds "
        "(the loop thread waits for a CPU, and for the GIL around every commit), so a "
        "target under that floor cannot be met by any code on this machine; the "
        f"ledger's worst is {over_floor:.2f}x that floor (median of the rounds); the "
        "store's writes run in one writer thread (ledger.stores.writer), so what the "
        "ledger adds above that floor is the Python that thread runs with the GIL held "
        f"between two fsyncs: a group of at most {GROUP_LIMIT} writes (GROUP_LIMIT)"))
    for r in (raw, floor_raw):
        r.conn.close()
    store.ledger.close()
