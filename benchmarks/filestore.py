"""The ledger against Moltis's own file (figure 3): the same single-key `update_raw` on a
ledger holding the 57 KB template and on `FileConfigStore` editing a copy of that file
(flock, re-read, in-place text edit, re-parse check, fsync, rename, directory fsync)."""

from __future__ import annotations

import shutil
import tomllib
from typing import Any

from benchmarks.harness import Row, Side, Target, alternate, fmt_rate, fmt_time
from benchmarks.workspace import (
    ACTOR,
    TEMPLATE,
    Ctx,
    async_block,
    fixture,
    scratch,
    sqlite_store,
    work_dir,
)


def rows() -> list[Row]:
    return [
        Row("3", "ledger `update_raw` / `FileConfigStore.update_raw`, one key of the 57 KB "
            "template: rate ratio", Target("report", text="report (expected ≥ 20×)")),
    ]


def _bump_port(cfg: Any) -> None:
    cfg.server.port = 13131 + (cfg.server.port - 13130) % 20_000


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    from ledger.stores.file_store import FileConfigStore

    src = fixture(TEMPLATE)
    folder = work_dir() / "file-store"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    shutil.copyfile(src, folder / "moltis.toml")
    file_store = FileConfigStore(folder / "moltis.toml")
    with src.open("rb") as f:
        ledger_store = sqlite_store(scratch("file-vs-ledger.db"), tomllib.load(f))

    block = ctx.sizes.file_block
    alt = alternate([
        Side("file", async_block(lambda: file_store.update_raw(_bump_port, actor=ACTOR)),
             block),
        Side("ledger", async_block(lambda: ledger_store.update_raw(_bump_port, actor=ACTOR)),
             block * 10),
    ], ctx.sizes.rounds)
    row = rows_by_fig["3"]
    row.measured = (f"ledger {fmt_rate(alt.rate('ledger'))} ({fmt_time(alt.median('ledger'))}"
                    f"/op), file store {fmt_rate(alt.rate('file'))} "
                    f"({fmt_time(alt.median('file'))}/op)")
    row.judge_rounds(alt.speedups("ledger", "file"))
    expected = row.ratio is not None and row.ratio >= 20
    row.note = "expectation (≥ 20×) met" if expected else (
        "below the expected 20×: the file store's write is fsync-bound too (two fsyncs: "
        "the file and its folder)")
    ledger_store.ledger.close()
