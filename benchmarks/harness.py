"""The measuring machinery: sides run in alternating blocks, per-round ratios, figure
rows, and the Markdown report.

These machines are shared and noisy (absolute times drift by about 30% between runs),
so a figure is never one side's time compared with a number measured earlier. Every
side of a comparison runs in the same process and the same run, in blocks of operations
taken in turn (round 1: A, B, C; round 2: C, B, A; ...), after a warm-up block of each.
A ratio is computed per round from the blocks of that round, and the report gives the
median over the rounds with the smallest and largest round.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

# A side does `n` operations and returns their total time in seconds, or one duration
# per operation (when the figure needs percentiles).
RunBlock = Callable[[int], float | list[float]]


@dataclass
class Side:
    name: str
    run: RunBlock
    block: int  # operations per block
    warmup: int | None = None  # operations before the first round (default: one block)


@dataclass
class Alternated:
    """What `alternate` measured: per side, per round, the mean time of one operation,
    plus every per-operation duration a side reported."""

    per_op: dict[str, list[float]]
    samples: dict[str, list[float]]
    rounds: int

    def ratios(self, num: str, den: str) -> list[float]:
        """Per round: mean op time of `num` / mean op time of `den`."""
        return [a / b for a, b in zip(self.per_op[num], self.per_op[den], strict=True)]

    def speedups(self, fast: str, slow: str) -> list[float]:
        """Per round: how many times faster `fast` is than `slow` (rate ratio)."""
        return self.ratios(slow, fast)

    def median(self, side: str) -> float:
        return statistics.median(self.per_op[side])

    def rate(self, side: str) -> float:
        return 1.0 / self.median(side)


def alternate(sides: Sequence[Side], rounds: int) -> Alternated:
    per_op: dict[str, list[float]] = {s.name: [] for s in sides}
    samples: dict[str, list[float]] = {s.name: [] for s in sides}
    for s in sides:  # warm up every side first: caches, statement caches, JIT-free paths
        s.run(s.block if s.warmup is None else s.warmup)
    order = list(sides)
    for _ in range(rounds):
        for s in order:
            out = s.run(s.block)
            if isinstance(out, list):
                samples[s.name].extend(out)
                total = math.fsum(out)
            else:
                total = out
            per_op[s.name].append(total / s.block)
        order.reverse()  # A B C, C B A, ...: no side always runs right after another
    return Alternated(per_op, samples, rounds)


def timed_loop(op: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        op()
    return time.perf_counter() - t0


def timed_each(op: Callable[[], object], n: int) -> list[float]:
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        op()
        out.append(clock() - t0)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


# -- figures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """`>=` / `<=`: the ratio against a bound; `~`: |ratio - 1| <= bound (no measurable
    difference); `report`: no bound, `text` says what is expected."""

    op: Literal[">=", "<=", "~", "report"]
    bound: float = 0.0
    text: str = ""
    style: Literal["x", "frac", "abs"] = "x"  # how ratios are written: 0.91x, 1/812, 180 B
    unit: str = ""

    def met(self, value: float) -> bool | None:
        if self.op == ">=":
            return value >= self.bound
        if self.op == "<=":
            return value <= self.bound
        if self.op == "~":
            return abs(value - 1.0) <= self.bound
        return None

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.op == "~":
            return f"within ±{self.bound:.0%} (no measurable difference)"
        sign = {">=": "≥", "<=": "≤"}.get(self.op, self.op)
        if self.style == "x":
            return f"{sign} {self.bound:g}×"
        return f"{sign} {fmt_value(self.bound, self.style, self.unit)}"


def fmt_value(value: float, style: str = "x", unit: str = "") -> str:
    if style == "frac":
        return f"1/{1 / value:,.0f}" if value > 0 else "0"
    if style == "abs":
        return f"{value:,.1f}{unit}" if value < 100 else f"{value:,.0f}{unit}"
    return f"{value:.2f}×" if value < 100 else f"{value:,.0f}×"


@dataclass
class Row:
    fig: str
    what: str
    target: Target
    measured: str = ""
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    status: Literal["PASS", "MISS", "REPORT", "SKIP", "ERROR", ""] = ""
    note: str = ""
    profile: list[str] = field(default_factory=list)  # top frames, when missed

    def judge(self, ratio: float, spread: Sequence[float] = (), *, note_if_missed: str = "",
              judged: float | None = None) -> Row:
        """Record the median ratio (and its spread over rounds) and PASS/MISS it.
        `judged` is the value the target applies to, when it is not the median."""
        self.ratio = ratio
        if spread:
            self.low, self.high = min(spread), max(spread)
        ok = self.target.met(ratio if judged is None else judged)
        self.status = "REPORT" if ok is None else ("PASS" if ok else "MISS")
        if ok is False and note_if_missed:
            self.note = note_if_missed
        return self

    def judge_rounds(self, per_round: Sequence[float], *, note_if_missed: str = "") -> Row:
        """Judge the median of per-round ratios; the spread is the smallest and largest."""
        return self.judge(statistics.median(per_round), per_round,
                          note_if_missed=note_if_missed)

    def ratio_text(self) -> str:
        if self.ratio is None:
            return "—"
        t = self.target
        text = fmt_value(self.ratio, t.style, t.unit)
        if self.low is not None and self.high is not None and self.low != self.high:
            text += (f" ({fmt_value(self.low, t.style, t.unit)} – "
                     f"{fmt_value(self.high, t.style, t.unit)})")
        return text


# -- formatting helpers -----------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def fmt_rate(per_second: float, unit: str = "/s") -> str:
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M{unit}"
    if per_second >= 1e4:
        return f"{per_second / 1e3:.0f}k{unit}"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.2f}k{unit}"
    return f"{per_second:.1f}{unit}"


# -- the report -----------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(path: str, *, rows: Sequence[Row], machine: Sequence[tuple[str, str]],
                 header: Sequence[str], method: Sequence[str], closing: Sequence[str]) -> None:
    lines = ["# moltis-config-ledger benchmark results", ""]
    lines += [*header, ""]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in machine]
    lines += ["", "## Figures", "",
              "Ratio: median over the rounds of the same run (smallest – largest round in "
              "brackets).", "",
              "| # | what is measured | measured | ratio | target | result | note |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.fig} | {_cell(r.what)} | {_cell(r.measured) or '—'} | "
            f"{_cell(r.ratio_text())} | {_cell(r.target.describe())} | "
            f"**{r.status or '—'}** | {_cell(r.note)} |")
    lines += ["", "## Method", ""] + [f"- {m}" for m in method]
    if closing:
        lines += ["", "## Notes", "", *closing]
    profiled = [r for r in rows if r.profile]
    if profiled:
        lines += ["", "## Profiles of the missed figures", "",
                  "The library side of each missed figure, run again after the measurement "
                  "under pyinstrument (wall-clock samples: time inside SQLite, fsync or a C "
                  "extension is self time of the Python function that called it).", ""]
        for r in profiled:
            lines += [f"**{r.fig}**", ""] + [f"- {_cell(p)}" for p in r.profile] + [""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
