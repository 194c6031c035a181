"""Several writer processes on one ledger (figure 8; figure 10b on PostgreSQL).

Each writer is a fresh OS process with its own store, as separate gateways would be. It
opens and warms its store, says it is ready, and waits for a common start signal; then
it does N read-modify-write increments of one int key through `update_raw`. A round's
rate is all increments over the span from the first start to the last end. Rounds of one
writer and of four writers alternate on the same database, and at the end the key must
equal its first value plus every increment made (no lost update) and the chain must
verify with no gap.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Alternated,
    Row,
    Side,
    Target,
    alternate,
    fmt_rate,
    fmt_time,
    percentile,
)
from benchmarks.workspace import (
    DOCS_EXAMPLE,
    REPO,
    Ctx,
    aio,
    fixture_doc,
    scratch,
    sqlite_store,
    worker_command,
)

WRITERS = 4


def rows() -> list[Row]:
    return [
        Row("8", f"{WRITERS} writer processes (own store each, `update_raw` increments of one "
            "int key, SQLite FULL): total rate / one writer process; lost updates",
            Target(">=", 0.9, text="≥ 0.9 (issue 16; 0.8 in issue 7), zero lost updates")),
        Row("i16g", f"the same {WRITERS} writer processes: worst single update (p99 in the "
            "note), every update of every round", Target("<=", 50, style="abs", unit=" ms",
                                                        text="≤ 50 ms worst, ≤ 10 ms p99")),
        Row("i16m", f"{WRITERS} writer processes waiting with SQLite's own busy back-off "
            "(the oldest wait) / with the ledger's queue of writer processes, alternated "
            "with the ledger's polling wait without the queue (the previous one): p99 "
            "update time ratio (each wait's p99, worst and total rate in the note)",
            Target("report", text="report (> 1: the queue is fairer)")),
    ]


class WriterPool:
    """Runs rounds of writer processes against one target and counts their increments."""

    def __init__(self, kind: str, target: str, schema: str | None = None) -> None:
        self.kind, self.target, self.schema = kind, target, schema
        self.total = 0
        self.latencies: dict[int, list[float]] = {}  # processes -> every update's time
        # processes -> each process's first (untimed, warm-up) update: reported apart
        self.firsts: dict[int, list[float]] = {}

    def round(self, processes: int, per_process: int) -> float:
        """Wall seconds from the first writer's start to the last one's end."""
        with tempfile.TemporaryDirectory(prefix="writers-") as tmp:
            go = Path(tmp) / "go"
            procs, readies = [], []
            for i in range(processes):
                ready = Path(tmp) / f"ready-{i}"
                args = [self.kind, self.target, str(per_process), str(ready), str(go)]
                if self.schema:
                    args.append(self.schema)
                procs.append(subprocess.Popen(worker_command("writer", *args), cwd=REPO,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True))
                readies.append(ready)
            deadline = time.monotonic() + 120
            while not all(r.exists() for r in readies):
                if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            go.touch()
            answers = []
            for p in procs:
                out, err = p.communicate(timeout=600)
                if p.returncode != 0:
                    raise RuntimeError(f"a writer failed ({p.returncode}): {err[-2000:]}")
                answers.append(json.loads(out.strip().splitlines()[-1]))
        self.total += sum(a["n"] + a.get("warm", 0) for a in answers)
        for a in answers:
            self.latencies.setdefault(processes, []).extend(a.get("each", ()))
            if "first" in a:
                self.firsts.setdefault(processes, []).append(a["first"])
        return max(a["end"] for a in answers) - min(a["start"] for a in answers)

    def side(self, name: str, processes: int, per_process: int) -> Side:
        def run(n: int) -> float:
            return self.round(processes, max(1, n // processes))

        return Side(name, run, processes * per_process,
                    warmup=processes * max(1, per_process // 10))


def compare(pool: WriterPool, ctx: Ctx) -> Alternated:
    ops = ctx.sizes.writer_ops
    return alternate([pool.side("one", 1, ops), pool.side("many", WRITERS, ops)],
                     ctx.sizes.writer_rounds)


def check_no_lost_updates(read_value: Callable[[], int], first: int, pool: WriterPool,
                          verify: Callable[[], Any]) -> str:
    final = read_value()
    report = verify()
    lost = first + pool.total - final
    if lost or not report.ok:
        return (f"LOST {lost} of {pool.total:,} increments (final {final}); verify: "
                f"{report.problem or 'ok'}")
    return f"0 lost of {pool.total:,} increments; chain verifies ({report.events:,} events)"


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    path = scratch("writers.db")
    store = sqlite_store(path, fixture_doc(DOCS_EXAMPLE))
    first = aio(store.load_raw()).tools.agent_timeout_secs
    store.ledger.close()
    pool = WriterPool("sqlite", str(path))
    alt = compare(pool, ctx)

    from ledger import SqliteConfigStore

    check = SqliteConfigStore(path)
    lost = check_no_lost_updates(
        lambda: aio(check.load_raw()).tools.agent_timeout_secs, first, pool,
        check.ledger.verify)
    check.ledger.close()
    judge(rows_by_fig["8"], alt, lost)
    judge_latency(rows_by_fig["i16g"], pool)
    compare_waits(ctx, rows_by_fig["i16m"])


def compare_waits(ctx: Ctx, row: Row) -> None:
    """The same 4-writer rounds with the old waits (SQLite's back-off; the ledger's
    polling without the queue of writer processes) and the current one (the queue),
    alternated on one database, so machine load hits them alike."""
    path = scratch("writers-waits.db")
    sqlite_store(path, fixture_doc(DOCS_EXAMPLE)).ledger.close()
    pools = {"queue": WriterPool("sqlite", str(path)),
             "poll": WriterPool("sqlite-poll", str(path)),
             "backoff": WriterPool("sqlite-backoff", str(path))}
    ops = max(10, ctx.sizes.writer_ops // 2)
    per_round: dict[str, list[tuple[float, float]]] = {name: [] for name in pools}

    def side(name: str) -> Side:
        pool = pools[name]

        def run(n: int) -> float:
            before = len(pool.latencies.get(WRITERS, []))
            took = pool.round(WRITERS, max(1, n // WRITERS))
            each = pool.latencies[WRITERS][before:]
            per_round[name].append((percentile(each, 99), max(each)))
            return took

        return Side(name, run, WRITERS * ops, warmup=WRITERS * max(1, ops // 10))

    alt = alternate([side(name) for name in pools], max(3, ctx.sizes.writer_rounds // 2))
    ratios = [b[0] / q[0] for q, b in zip(per_round["queue"], per_round["backoff"],
                                          strict=True)]
    worst = {name: max(w for _, w in rounds) for name, rounds in per_round.items()}
    p99 = {name: percentile(pools[name].latencies[WRITERS], 99) for name in pools}
    rate = {name: alt.rate(name) for name in pools}
    row.measured = "; ".join(
        f"{label} p99 {fmt_time(p99[name])}, worst {fmt_time(worst[name])}, "
        f"{fmt_rate(rate[name])}"
        for name, label in (("backoff", "back-off"), ("poll", "polling"), ("queue", "queue")))
    row.judge_rounds(ratios)


def judge_latency(row: Row, pool: WriterPool) -> None:
    """Worst and p99 of every update made by the writers of the many-writer rounds."""
    each = pool.latencies.get(WRITERS, [])
    if not each:
        row.status, row.note = "ERROR", "no per-update times came back from the writers"
        return
    worst, p99, p50 = max(each), percentile(each, 99), percentile(each, 50)
    firsts = pool.firsts.get(WRITERS, [])
    cold = (f"; not in the figure: each process's first update (made before the start "
            f"signal: imports and decoder builds, once per process, outside the lock), "
            f"median {fmt_time(percentile(firsts, 50))}, worst {fmt_time(max(firsts))}"
            if firsts else "")
    row.measured = (f"worst {fmt_time(worst)}, p99 {fmt_time(p99)}, median {fmt_time(p50)} "
                    f"over {len(each):,} updates{cold}")
    row.judge(worst * 1000, note_if_missed=(
        "waiting writers sleep in the kernel (a flock queue before SQLite's lock) and "
        "wake when the holder is done, so a long wait means the lock was held that long "
        "or the waiter was not given a CPU: writers the OS descheduled while holding it "
        "(machine load; 4 processes on this machine's cores); each process is warmed by "
        "one update before the start signal, so a cold start is not in the figure; i16m "
        "compares the old waits"))
    if p99 * 1000 > 10 and row.status == "PASS":
        row.status, row.note = "MISS", f"p99 {fmt_time(p99)} is above 10 ms"


def judge(row: Row, alt: Alternated, lost: str) -> None:
    row.measured = (f"{WRITERS} writers {fmt_rate(alt.rate('many'))} total, one writer "
                    f"{fmt_rate(alt.rate('one'))}; {lost}")
    row.judge_rounds(alt.speedups("many", "one"), note_if_missed=(
        "appends serialize on the write lock, so the writers' total rate is one over "
        "the time each holds it, and a hand-over makes that longer than one writer's: "
        "the next writer catches up on the others' events (reads and replays them, "
        "converts the typed section they changed) and checks the head MAC and key check "
        "they left before appending (thread CPU per update, one process, 2026-12-04: "
        "0.54 ms alone, 0.73-0.81 ms after 3 other writers' events). Since 2026-12-04 "
        "05:45 a writer that has to wait does that for the events already committed "
        "before it sleeps (ledger.engine.write_wait), but the previous holder's event "
        "always commits after that, so ~0.1 ms of fixed catch-up, typed-view and MAC "
        "work per hand-over stays inside the lock (side by side, load 2-3: lock-holding "
        "CPU per update among 4 writers 1.02 -> 0.96 ms, rate unchanged within noise; "
        "polling the work during the wait was measured and cost more CPU than it "
        "saved); with 4 processes "
        "on this machine's 2 cores the work inside the lock also runs slower (0.26 ms "
        "of CPU per update alone, 0.52-0.80 ms holding the lock among 4: holders "
        "preempted, caches shared), and a holder the OS deschedules makes every other "
        "writer wait (see i16m for the wait itself). Both sides are warmed before the "
        "start signal (since 2026-12-03 23:35): before, the one-writer round counted "
        "its process's cold first update (~150 ms in a 400-update round) while the "
        "4 writers overlapped theirs, which raised this ratio (0.97x then, 0.72x "
        "warm; side by side on one database, 2026-12-04, load 3.7-5.3: 1.08x cold, "
        "0.60x warm, and 0.50x warm without the queue's kept helper thread); under "
        "outside load the ratio rises (4 processes get more of a loaded machine than "
        "one)"))
    if lost.startswith("LOST"):
        row.status = "MISS"
        row.note = (row.note + "; " if row.note else "") + lost
