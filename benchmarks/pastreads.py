"""Reads that must stay cheap however long the log grows (figure 6 and issue 5), each
alternated with a full replay of the same large ledger in one run:

- open + head read: `SqliteConfigStore(path)` then `await load_raw()`, in this process
  and in a fresh subprocess (timed inside it, after its imports);
- a random past point: `ledger.state_at(seq)` and `await store.load_raw_at(seq)`
  (median and 99th percentile over every sampled read);
- issue 5's operator reads: the newest `log` page (`iter_history(limit=20)`), `blame`
  of the head and `diff` between two recent points.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from benchmarks.bigledger import big_ledger
from benchmarks.harness import (
    Alternated,
    Row,
    Side,
    Target,
    alternate,
    fmt_time,
    percentile,
    timed_each,
)
from benchmarks.profiling import profile_misses
from benchmarks.replay import replay_side
from benchmarks.workspace import Ctx, aio, async_each, run_worker


def rows() -> list[Row]:
    frac = "frac"
    return [
        Row("6a", "open + head read (`SqliteConfigStore(path)` + `load_raw()`) in process "
            "on the large ledger / its full replay: time ratio",
            Target("<=", 1 / 100, style=frac)),
        Row("6b", "the same open + head read in a fresh subprocess (timed inside it, after "
            "imports) / full replay", Target("<=", 1 / 100, style=frac)),
        Row("6c", "`ledger.state_at(random seq)` / full replay: median ratio (target on the "
            "99th percentile)", Target("<=", 1 / 500, style=frac, text="p99 ≤ 1/500")),
        Row("6d", "`await store.load_raw_at(random seq)` / full replay: median ratio (target "
            "on the 99th percentile)", Target("<=", 1 / 500, style=frac, text="p99 ≤ 1/500")),
        Row("i5a", "`log` newest page (`iter_history(ledger, limit=20)`) / full replay",
            Target("<=", 1 / 20, style=frac, text="< 1/20")),
        Row("i5b", "`blame` of the head (`ops.blame(ledger, head state)`) / full replay",
            Target("<=", 1 / 20, style=frac, text="< 1/20")),
        Row("i5c", "`diff` between two recent points (`state_at` ×2 + `ops.diff_states`) / "
            "full replay", Target("<=", 1 / 20, style=frac, text="< 1/20")),
    ]


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    from ledger import SqliteConfigStore
    from ledger.engine.queries import iter_history
    from ledger.ops.history import blame, diff_states

    events = ctx.sizes.big_events
    path = big_ledger(events)
    store = SqliteConfigStore(path)
    ledger = store.ledger
    head = ledger.head_state().seq
    rng = random.Random(7)

    async def open_and_read() -> None:
        s = SqliteConfigStore(path)
        await s.load_raw()
        s.ledger.close()

    def open_in_process(n: int) -> list[float]:
        return async_each(open_and_read)(n)

    walls: list[float] = []

    def open_in_subprocess(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            answer = run_worker("open-head", str(path))
            walls.append(time.perf_counter() - t0)
            if answer["seq"] != head:
                raise RuntimeError(f"the subprocess read seq {answer['seq']}, not {head}")
            out.append(answer["seconds"])
        return out

    def past_state() -> Any:
        return ledger.state_at(rng.randint(1, head - 1))

    def past_typed() -> Any:
        return store.load_raw_at(rng.randint(1, head - 1))

    def log_page() -> Any:
        page = list(iter_history(ledger, limit=20))
        assert len(page) == 20
        return page

    sizes = ctx.sizes
    few = max(2, sizes.past_block // 5)
    sides = [
        replay_side(ledger),
        Side("open", open_in_process, few),
        Side("subprocess", open_in_subprocess, sizes.subprocesses, warmup=1),
        Side("state_at", lambda n: timed_each(past_state, n), sizes.past_block),
        Side("load_raw_at", async_each(past_typed), sizes.past_block),
        Side("log", lambda n: timed_each(log_page, n), few),
        Side("blame", lambda n: timed_each(lambda: blame(ledger, ledger.head_state()), n), few),
        Side("diff", lambda n: timed_each(lambda: diff_states(
            ledger.state_at(head - 10), ledger.state_at(head - 2), ledger.vault), n), few),
    ]
    alt = alternate(sides, sizes.rounds)
    _judge(alt, rows_by_fig, events, walls)
    by = {s.name: s for s in sides}
    profile_misses(ctx, rows_by_fig, {"6a": by["open"], "6c": by["state_at"],
                                      "6d": by["load_raw_at"], "i5a": by["log"],
                                      "i5b": by["blame"], "i5c": by["diff"]})
    aio(store.close())


def _judge(alt: Alternated, rows: dict[str, Row], events: int, walls: list[float]) -> None:
    t_replay = alt.median("replay")
    replay_text = f"full replay {fmt_time(t_replay)}"
    for row in rows.values():
        row.what = row.what.replace("the large ledger", f"{events:,} events")

    def simple(fig: str, side: str, label: str, note: str) -> None:
        row = rows[fig]
        row.measured = f"{label} {fmt_time(alt.median(side))}, {replay_text}"
        row.judge_rounds(alt.ratios(side, "replay"), note_if_missed=note)

    simple("6a", "open", "open + read", "opening costs more than 1% of a replay")
    simple("6b", "subprocess", "open + read", (
        "opening costs more than 1% of a replay: in a fresh process the first typed read "
        "also builds the schema's tables (msgspec type info, the free-form section map) "
        "once, which is more than the head read itself (head mark and MAC, the MAC'd "
        "snapshot and its proven tail)"))
    rows["6b"].measured += (f"; whole subprocess incl. interpreter start and imports "
                            f"{fmt_time(statistics.median(walls))}")
    for fig, side, label in (("6c", "state_at", "state_at"),
                             ("6d", "load_raw_at", "load_raw_at")):
        samples = alt.samples[side]
        p50, p99 = statistics.median(samples), percentile(samples, 99)
        row = rows[fig]
        row.measured = (f"{label} median {fmt_time(p50)}, p99 {fmt_time(p99)}, "
                        f"{replay_text}; p99 ratio 1/{t_replay / p99:,.0f}")
        per_round = alt.ratios(side, "replay")
        row.judge(statistics.median(per_round), per_round, judged=p99 / t_replay,
                  note_if_missed=(
                      f"the 99th percentile is 1/{t_replay / p99:,.0f} of a replay: each read "
                      "decodes the MAC'd snapshot at or before its seq and re-hashes the "
                      "events after it (up to SNAPSHOT_EVERY - 1) to prove what it serves, "
                      "one keyed blake3 per event; see its profile"))
    simple("i5a", "log", "log page", "reading the newest page costs more than 1/20 of a replay")
    simple("i5b", "blame", "blame", "blame costs more than 1/20 of a replay")
    simple("i5c", "diff", "diff", "diff costs more than 1/20 of a replay")
