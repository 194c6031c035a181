"""What integrity by construction costs (issue 13): the same store with and without the
integrity steps, alternated in one run.

- `update_raw` (durable, SQLite FULL, docs example): as shipped (each append writes a
  keyed head MAC into ledger_meta, an Ed25519 signature at checkpoints: every 256
  events or 1 s; every 256th event seals its snapshot with a keyed MAC) against the
  same engine with those steps switched off (its vault reports no integrity key, as for
  a process without the ledger key: no MAC, no signature, no snapshot). The off side
  also skips writing snapshots at all, so the ratio slightly overstates the cost.
- the same without the fsync (synchronous=NORMAL): the CPU cost alone, against a much
  smaller base (a bound from above for the durable figure, whose per-round ratios are
  dominated by fsync noise on a shared disk); alternated with a third side that signs
  every append, as the engine did before checkpoints (i13e: what checkpoints saved);
- a cached head read (`load_raw()` when nothing changed) with and without: no MAC or
  signature is on that path, so no measurable difference is expected.
"""

from __future__ import annotations

from typing import Any

from benchmarks.harness import Row, Side, Target, alternate, fmt_time
from benchmarks.profiling import profile_misses
from benchmarks.workspace import (
    ACTOR,
    DOCS_EXAMPLE,
    Ctx,
    aio,
    async_block,
    fixture_doc,
    scratch,
    sqlite_store,
)


def rows() -> list[Row]:
    return [
        Row("i13a", "durable `update_raw` with head signing + snapshot MACs / the same with "
            "them switched off (SQLite FULL, docs example): time ratio", Target("<=", 1.10)),
        Row("i13b", "cached head `load_raw()` with integrity / without: time ratio",
            Target("~", 0.10)),
        Row("i13d", "the same `update_raw` comparison without the fsync (synchronous=NORMAL): "
            "the CPU cost alone, against a much smaller base: time ratio",
            Target("report", text="report (≤ 1.10× would bound i13a from above)")),
        Row("i13e", "the i13d comparison with an Ed25519 signature on every append (the "
            "engine before checkpoints) / switched off: time ratio",
            Target("report", text="report (what checkpoints save: compare with i13d)")),
    ]


def _increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def _without_integrity(store: Any) -> Any:
    store.ledger.vault.integrity = lambda txn=None: None  # as without the ledger key
    return store


def _normal(path: Any, doc: Any) -> Any:
    from ledger import SqliteConfigStore

    store = SqliteConfigStore(path, synchronous="NORMAL")
    aio(store.save_raw(doc, actor=ACTOR, source="import"))
    return store


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    sizes = ctx.sizes
    doc = fixture_doc(DOCS_EXAMPLE)
    signed = sqlite_store(scratch("integrity-on.db"), doc)
    plain = _without_integrity(sqlite_store(scratch("integrity-off.db"), doc))
    block = sizes.write_block
    on = Side("on", async_block(lambda: signed.update_raw(_increment, actor=ACTOR)), block)
    off = Side("off", async_block(lambda: plain.update_raw(_increment, actor=ACTOR)), block)
    alt = alternate([on, off], sizes.write_rounds)
    r = rows_by_fig["i13a"]
    r.measured = f"with {fmt_time(alt.median('on'))}, without {fmt_time(alt.median('off'))}"
    r.judge_rounds(alt.ratios("on", "off"), note_if_missed="see the profile")

    fast_on_store = _normal(scratch("integrity-on-normal.db"), doc)
    fast_off_store = _without_integrity(_normal(scratch("integrity-off-normal.db"), doc))
    every_store = _normal(scratch("integrity-every-normal.db"), doc)
    every_store.ledger.voucher.every = 1  # a checkpoint at every append: the old way
    fast_on = Side("on", async_block(
        lambda: fast_on_store.update_raw(_increment, actor=ACTOR)), block * 4)
    fast_off = Side("off", async_block(
        lambda: fast_off_store.update_raw(_increment, actor=ACTOR)), block * 4)
    every = Side("every", async_block(
        lambda: every_store.update_raw(_increment, actor=ACTOR)), block * 4)
    alt = alternate([fast_on, fast_off, every], sizes.write_rounds)
    r = rows_by_fig["i13d"]
    r.measured = f"with {fmt_time(alt.median('on'))}, without {fmt_time(alt.median('off'))}"
    r.judge_rounds(alt.ratios("on", "off"))
    r = rows_by_fig["i13e"]
    r.measured = (f"signing every append {fmt_time(alt.median('every'))}, without "
                  f"{fmt_time(alt.median('off'))}")
    r.judge_rounds(alt.ratios("every", "off"))
    for store in (fast_on_store, fast_off_store, every_store):
        store.ledger.close()

    read_on = Side("on", async_block(signed.load_raw), sizes.read_block)
    read_off = Side("off", async_block(plain.load_raw), sizes.read_block)
    alt = alternate([read_on, read_off], sizes.rounds)
    r = rows_by_fig["i13b"]
    r.measured = f"with {fmt_time(alt.median('on'))}, without {fmt_time(alt.median('off'))}"
    r.judge_rounds(alt.ratios("on", "off"))
    profile_misses(ctx, rows_by_fig, {"i13a": on, "i13b": read_on})
    signed.ledger.close()
    plain.ledger.close()
