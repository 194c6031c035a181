"""Head reads when nothing changed (figure 4), for the docs example, the 57 KB
template (mostly comments) and the large generated config (issue 16: `largeconfig`,
tens of KB of real values), against a tomllib parse of the same file's text (already
in memory, so the baseline does not even pay for reading the file):

- `await store.load_effective()`: a fresh typed copy with environment layers applied;
- `await store.view()`: the shared immutable instance;
- `await store.load_raw()`: a fresh typed copy of the stored layer;
- issue 3: `load_effective(env=...)` with 20 MOLTIS_* overrides set / the same call
  with none set.
"""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any

from benchmarks.harness import Row, Side, Target, alternate, fmt_time, timed_loop
from benchmarks.profiling import profile_misses
from benchmarks.workspace import (
    DOCS_EXAMPLE,
    TEMPLATE,
    Ctx,
    aio,
    async_block,
    fixture,
    scratch,
    sqlite_store,
)

LARGE = "large"  # benchmarks.largeconfig, generated (not a fixture file)
# (fixture, label, figures: load_effective, view, load_raw, env overrides)
FIXTURES = (
    (DOCS_EXAMPLE, "docs example", ("4a", "4c", "4e", "4g")),
    (TEMPLATE, "57 KB template (mostly comments)", ("4b", "4d", "4f", "4h")),
    (LARGE, "large generated config (≥ 50 KB of values)", ("i16i", "i16j", "i16k", "i16l")),
)
OVERRIDES = 20
_KEY = re.compile(r"[a-z][a-z0-9_]*")


def rows() -> list[Row]:
    out = []
    for _, label, (eff, view, raw, env) in FIXTURES:
        out += [
            Row(eff, f"head `load_effective()` when unchanged vs tomllib parse, "
                f"{label}: times faster", Target(">=", 50)),
            Row(view, f"head `view()` (shared instance) vs tomllib parse, {label}: "
                "times faster", Target(">=", 50)),
            Row(raw, f"head `load_raw()` (fresh copy) vs tomllib parse, {label}: "
                "times faster", Target(">=", 50)),
            Row(env, f"`load_effective(env=...)` with {OVERRIDES} MOLTIS_* overrides "
                f"/ the same without overrides, {label}: time ratio",
                Target("<=", 2.0, text="≤ 2×")),
        ]
    return out


def _candidates(document: dict[str, Any]) -> list[tuple[str, str]]:
    from ledger.core.document import leaves

    out = []
    for path, value in leaves(document):
        if not all(isinstance(k, str) and _KEY.fullmatch(k) for k in path):
            continue
        if path[0] == "config":  # names the store read from: no MOLTIS_CONFIG__* applies
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_./:-]*", value) \
                and value.lower() not in ("true", "false", "null"):
            text = value
        else:
            continue
        out.append(("MOLTIS_" + "__".join(k.upper() for k in path), text))
    return sorted(out)


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    for i, (name, label, figs) in enumerate(FIXTURES):
        _one_fixture(ctx, rows_by_fig, name, label, i, figs)


def _one_fixture(ctx: Ctx, rows: dict[str, Row], name: str, label: str, i: int,
                 figs: tuple[str, str, str, str]) -> None:
    from ledger.ops.display import effective_document

    from benchmarks.largeconfig import large_config_text

    text = (large_config_text() if name == LARGE
            else fixture(name).read_text(encoding="utf-8"))
    store = sqlite_store(scratch(f"reads-{i}.db"), tomllib.loads(text))
    plain = dict(os.environ)
    eff = aio(store.load_effective(env=plain))
    overrides = _candidates(effective_document(eff))[:OVERRIDES]
    if len(overrides) < OVERRIDES:
        raise RuntimeError(f"{label}: only {len(overrides)} overridable leaves")
    with_env = plain | dict(overrides)
    meta = aio(store.source_metadata(env=with_env))
    applied = sum(1 for p in meta.values() if p.layer == "env")
    if applied != OVERRIDES:
        raise RuntimeError(f"{label}: {applied} of {OVERRIDES} overrides took effect")

    block = ctx.sizes.read_block
    sides = [
        Side("tomllib", lambda n: timed_loop(lambda: tomllib.loads(text), n),
             max(10, block // 50)),
        Side("load_effective", async_block(store.load_effective), block),
        Side("view", async_block(store.view), block),
        Side("load_raw", async_block(store.load_raw), block),
        Side("plain_env", async_block(lambda: store.load_effective(env=plain)), block),
        Side("with_env", async_block(lambda: store.load_effective(env=with_env)), block),
    ]
    alt = alternate(sides, ctx.sizes.rounds)
    t_toml = alt.median("tomllib")
    size = f"{len(text.encode()):,}"
    fig_eff, fig_view, fig_raw, fig_env = figs
    for fig, side in ((fig_eff, "load_effective"), (fig_view, "view"), (fig_raw, "load_raw")):
        row = rows[fig]
        t_read = alt.median(side)
        row.measured = f"{side} {fmt_time(t_read)}, tomllib {fmt_time(t_toml)} ({size} B)"
        note = (f"a {size}-byte file parses in {fmt_time(t_toml)}, so 50× leaves "
                f"{fmt_time(t_toml / 50)} per read; the read costs {fmt_time(t_read)}")
        if side == "load_effective":
            t_dict = alt.median("plain_env")
            note += (f"; with env= a dict of the same variables it costs {fmt_time(t_dict)}, "
                     f"so {fmt_time(max(0.0, t_read - t_dict))} goes to reading os.environ")
        row.judge_rounds(alt.speedups(side, "tomllib"), note_if_missed=note)
    row = rows[fig_env]
    row.measured = (f"{OVERRIDES} overrides {fmt_time(alt.median('with_env'))}, none "
                    f"{fmt_time(alt.median('plain_env'))}")
    row.judge_rounds(alt.ratios("with_env", "plain_env"),
                     note_if_missed="building the cache key from the environment dominates")
    by = {s.name: s for s in sides}
    profile_misses(ctx, rows, {fig_eff: by["load_effective"], fig_view: by["view"],
                               fig_raw: by["load_raw"], fig_env: by["with_env"]})
    store.ledger.close()
