"""Space (figure 9): bytes on disk per single-key change event, and the extra peak memory
of a process that opens the large ledger and reads its head over one that opens a fresh
ledger holding the same configuration (alternated, each in a fresh subprocess)."""

from __future__ import annotations

import os
import statistics

from benchmarks.bigledger import big_ledger
from benchmarks.harness import Row, Side, Target, alternate
from benchmarks.workspace import DOCS_EXAMPLE, Ctx, fixture_doc, run_worker, scratch, sqlite_store


def rows() -> list[Row]:
    return [
        Row("9a", "on-disk bytes per single-key change event, snapshots included (database + "
            "WAL after a checkpoint / events) on the large ledger",
            Target("<=", 200, style="abs", unit=" B")),
        Row("9b", "extra peak RSS (VmHWM, see `worker.peak_rss_kb`) of a fresh process that "
            "opens the large ledger and reads its head, over one that opens a fresh ledger "
            "with the same config",
            Target("<=", 10, style="abs", unit=" MB")),
    ]


def _sizes(path: str) -> tuple[int, int, int]:
    """(database + WAL bytes, event rows, snapshot bytes) after a TRUNCATE checkpoint."""
    import apsw

    conn = apsw.Connection(path)
    try:
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        events = conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]
        snaps = conn.execute(
            "SELECT coalesce(sum(length(state) + length(hash) + 8), 0) FROM ledger_snapshots"
        ).fetchone()[0]
    finally:
        conn.close()
    total = sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))
    return total, events, snaps


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    events = ctx.sizes.big_events
    big = big_ledger(events)
    total, count, snaps = _sizes(str(big))
    per_event = total / count
    r = rows_by_fig["9a"]
    r.what = r.what.replace("the large ledger", f"{count:,} events")
    r.measured = (f"{total / 1e6:,.1f} MB for {count:,} events = {per_event:.1f} B/event "
                  f"(snapshot payloads {snaps / count:.1f} B/event)")
    r.judge(per_event, note_if_missed="rows carry two 32-byte hashes and the JSON payload")

    empty = scratch("footprint-fresh.db")
    sqlite_store(empty, fixture_doc(DOCS_EXAMPLE)).ledger.close()
    rss: dict[str, list[float]] = {"big": [], "fresh": []}

    def measure(name: str, path: str) -> Side:
        def one(n: int) -> float:
            for _ in range(n):
                rss[name].append(run_worker("open-head", path)["peak_rss_kb"] / 1024)
            return 0.0

        return Side(name, one, ctx.sizes.subprocesses, warmup=0)

    alternate([measure("big", str(big)), measure("fresh", str(empty))],
              max(3, ctx.sizes.rounds // 2))
    extra = statistics.median(rss["big"]) - statistics.median(rss["fresh"])
    r = rows_by_fig["9b"]
    r.what = r.what.replace("the large ledger", f"a {events:,}-event ledger")
    r.measured = (f"peak RSS {statistics.median(rss['big']):.1f} MB vs "
                  f"{statistics.median(rss['fresh']):.1f} MB (median of {len(rss['big'])} "
                  "processes each)")
    r.judge(extra, note_if_missed="opening the large ledger holds more than 10 MB")
