"""Where the time goes when a target is missed: the library side of that figure is run
again under pyinstrument (wall-clock sampling, so time spent inside SQLite, fsync or a
C extension shows as self time of the Python function that called it), and the report
gets its top frames. Profiles run after the measurement, so they never disturb it."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from benchmarks.harness import Row, Side
from benchmarks.workspace import Ctx

TOP = 8
LIBRARY = ("ledger/", "projections/")


def profile_misses(ctx: Ctx, rows: dict[str, Row], sides: dict[str, Side]) -> None:
    """For each missed figure in `rows` whose library side is given, profile that side
    for whole blocks until the run's profile time has passed (at least one block)."""
    done: dict[int, list[str]] = {}
    for fig, side in sides.items():
        row = rows[fig]
        if row.status == "MISS" and ctx.profile:
            if id(side) not in done:
                done[id(side)] = profile(side, ctx.sizes.profile_seconds)
            row.profile = done[id(side)]


def profile(side: Side, seconds: float) -> list[str]:
    try:
        from pyinstrument import Profiler
    except ImportError:
        return ["(pyinstrument is not installed here: no profile)"]
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    ops = 0
    profiler.start()
    try:
        started = time.perf_counter()
        while ops == 0 or time.perf_counter() - started < seconds:
            side.run(side.block)
            ops += side.block
    finally:
        profiler.stop()
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is None or root.time <= 0:
        return ["(no samples)"]
    return summarize(root, ops)


def _where(frame: Any) -> str:
    path = (frame.file_path_short or "?").replace("\\", "/")
    return f"`{frame.function}` ({path}:{frame.line_no})"


def summarize(root: Any, ops: int) -> list[str]:
    self_time: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)

    def walk(frame: Any, above: frozenset[str]) -> None:
        key = _where(frame)
        self_time[key] += frame.total_self_time
        if key not in above:  # count a recursive function once
            inclusive[key] += frame.time
        for child in frame.children:
            if not child.is_synthetic:
                walk(child, above | {key})

    walk(root, frozenset())
    total = root.time
    per_op = total / ops * 1e6

    def top(table: dict[str, float], keep: Any) -> str:
        items = sorted(((t, k) for k, t in table.items() if keep(k)), reverse=True)[:TOP]
        return "; ".join(f"{t / total:.0%} {k}" for t, k in items)

    return [
        f"{ops:,} operations, {total:.2f} s sampled ({per_op:,.1f} µs per operation)",
        "self time: " + top(self_time, lambda k: True),
        "inclusive, library code: " + top(
            inclusive, lambda k: any(p in k for p in LIBRARY)),
    ]
