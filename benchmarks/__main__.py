"""`python -m benchmarks [--quick] [--out FILE] [--pg DSN] [--only NAMES]`

Runs every figure group (or the named ones) and writes the Markdown report. Exits 1 only
when a group broke (an ERROR row); a missed target is a result, not a failure.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from benchmarks import (
    clistart,
    filestore,
    footprint,
    inprocess,
    integrity,
    pastreads,
    postgres,
    reads,
    replay,
    web,
    writers,
    writes,
)
from benchmarks.harness import Row, write_report
from benchmarks.workspace import (
    REPO,
    Ctx,
    Sizes,
    Skip,
    isolate_env,
    machine_facts,
    set_work_dir,
)


@dataclass(frozen=True)
class Group:
    name: str
    module: ModuleType
    summary: str

    @property
    def rows(self) -> Callable[[], list[Row]]:
        return self.module.rows  # type: ignore[no-any-return]


GROUPS = (
    Group("writes", writes, "durable update_raw vs raw apsw and eventsourcing; large "
          "config (1, 2, 6e, i4, i16h)"),
    Group("file", filestore, "ledger vs FileConfigStore writes on the template (3)"),
    Group("reads", reads, "head reads vs tomllib; env overrides (4; large config i16i-l)"),
    Group("replay", replay, "full replay and verify on the large ledger (5, 7, i13c)"),
    Group("history", pastreads, "open, past points, log/blame/diff on the large ledger (6, i5)"),
    Group("footprint", footprint, "bytes per event and peak RSS (9)"),
    Group("writers", writers, "4 writer processes on SQLite (8, i16g)"),
    Group("inproc", inprocess, "group commit: threads, stores; event-loop lag (i16d-f)"),
    Group("cli", clistart, "CLI start: get and --version vs python -c pass (i16a-c)"),
    Group("postgres", postgres, "PostgreSQL update_raw and writers (10)"),
    Group("web", web, "audit view timeline pages, large ledger vs 1,000 events (i17)"),
    Group("integrity", integrity, "the cost of the head MAC, checkpoint signing and "
          "snapshot MACs (i13)"),
)

METHOD = [
    "Every ratio compares sides measured in the same process and the same run, in "
    "alternating blocks (round 1: A B C …, round 2: … C B A), after a warm-up block of "
    "each side; the ratio is computed per round and the table gives the median round with "
    "the smallest and largest in brackets.",
    "Durable writes use synchronous=FULL in WAL mode for the ledger and the raw apsw "
    "baseline (one row per BEGIN IMMEDIATE transaction, an event-shaped row), on the same "
    "disk; eventsourcing runs with its own defaults (noted below).",
    "The large ledger is built once per size and cached in benchmarks/_work: event 1 "
    "imports the docs example through the store, then single-key change events encoded "
    "and hash-linked exactly as update_raw writes them, with a snapshot every "
    "SNAPSHOT_EVERY events as the engine writes them.",
    "Subprocess figures (fresh-process open, peak RSS, writer processes) time the work "
    "inside the child after its imports; writer rounds span the first start to the last "
    "end across processes that wait for a common start signal.",
    "A MISS is reported as measured; targets are never tuned by changing the baselines, "
    "each of which is the fastest honest use of its tool.",
]


def _sort_key(fig: str) -> tuple[int, int, str]:
    m = re.fullmatch(r"(i?)(\d+)(\w*)", fig)
    assert m is not None
    return (1 if m.group(1) else 0, int(m.group(2)), m.group(3))


def select(only: str | None) -> list[Group]:
    if not only:
        return list(GROUPS)
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    chosen = [g for g in GROUPS
              if g.name in wanted or any(r.fig in wanted for r in g.rows())]
    known = {g.name for g in GROUPS} | {r.fig for g in GROUPS for r in g.rows()}
    if unknown := wanted - known:
        raise SystemExit(f"unknown group or figure: {', '.join(sorted(unknown))} "
                         f"(groups: {', '.join(g.name for g in GROUPS)})")
    return chosen


def run_group(group: Group, ctx: Ctx) -> tuple[list[Row], float]:
    rows = group.rows()
    by_fig = {r.fig: r for r in rows}
    started = time.perf_counter()
    print(f"[{group.name}] {group.summary}", file=sys.stderr, flush=True)
    try:
        group.module.run(ctx, by_fig)
    except Skip as why:
        for r in rows:
            if not r.status:
                r.status, r.note = "SKIP", str(why)
    except Exception as err:  # a broken group must not hide the others
        traceback.print_exc()
        for r in rows:
            if not r.status:
                r.status, r.note = "ERROR", f"{type(err).__name__}: {err}"
    for r in rows:
        if not r.status:
            r.status, r.note = "ERROR", "the group finished without measuring this figure"
    took = time.perf_counter() - started
    for r in rows:
        print(f"  {r.fig:>4} {r.status:<6} {r.ratio_text():<28} {r.measured}", file=sys.stderr,
              flush=True)
    print(f"  ({took:.1f} s)", file=sys.stderr, flush=True)
    return rows, took


def closing_notes(rows: list[Row], ctx: Ctx, timings: list[tuple[str, float]],
                  wall: float) -> list[str]:
    out = []
    misses = [r for r in rows if r.status == "MISS"]
    if misses:
        out.append("Missed targets:")
        out.append("")
        out += [f"- **{r.fig}**: {r.ratio_text()} against {r.target.describe()}. {r.note}"
                for r in misses]
        out.append("")
    out += [f"- {n}" for n in ctx.notes]
    out.append("- Wall time per group: "
               + ", ".join(f"{name} {secs:.0f} s" for name, secs in timings)
               + f"; total {wall:.0f} s.")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few rounds: a smoke test, under a minute")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"),
                        help="the Markdown report (default: benchmarks/RESULTS.md)")
    parser.add_argument("--pg", default=os.environ.get("LEDGER_TEST_PG_URL"),
                        help="a PostgreSQL DSN for figure 10 (default: $LEDGER_TEST_PG_URL)")
    parser.add_argument("--only", help="comma-separated group names or figure numbers")
    parser.add_argument("--work", type=Path, default=None,
                        help="the work folder (default: benchmarks/_work; keep it on the "
                        "repository's disk for the durable-write figures)")
    parser.add_argument("--no-profile", action="store_true",
                        help="do not profile the library side of missed figures")
    parser.add_argument("--list", action="store_true", help="list the groups and figures")
    args = parser.parse_args(argv)
    if args.list:
        for g in GROUPS:
            print(f"{g.name:<10} {g.summary}: {', '.join(r.fig for r in g.rows())}")
        return 0

    groups = select(args.only)
    if args.work is not None:
        set_work_dir(args.work)
    isolate_env()
    ctx = Ctx(Sizes.make(args.quick), pg_dsn=args.pg or None, profile=not args.no_profile)
    machine = machine_facts([])
    started = time.perf_counter()
    rows: list[Row] = []
    timings = []
    for group in groups:
        group_rows, took = run_group(group, ctx)
        rows += group_rows
        timings.append((group.name, took))
    wall = time.perf_counter() - started
    rows.sort(key=lambda r: _sort_key(r.fig))
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    mode = "quick (smoke test sizes: not figures to quote)" if args.quick else "full"
    header = [
        f"Mode: **{mode}**; large ledger {ctx.sizes.big_events:,} events; "
        f"{ctx.sizes.rounds} rounds per comparison ({ctx.sizes.write_rounds} for writes). "
        f"Wall time {wall:.0f} s.",
        "",
        "Written by `python -m benchmarks" + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if args.only else "") + "`; see benchmarks/README.md.",
    ]
    write_report(args.out, rows=rows,
                 machine=[*machine, *ctx.machine, ("load average at end", load)],
                 header=header, method=METHOD,
                 closing=closing_notes(rows, ctx, timings, wall))
    print(f"wrote {args.out} in {wall:.1f} s", file=sys.stderr)
    return 1 if any(r.status == "ERROR" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
