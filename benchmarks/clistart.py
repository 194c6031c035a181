"""CLI start (issue 16): whole-process wall time of `moltis-ledger get server.port` and
`moltis-ledger --version` against `python -c pass` of the same interpreter, alternated
in blocks of fresh processes in one run.

The ledger holds the docs example (imported by `moltis-ledger migrate` first). Bytecode
is present for every side (each runs once before the rounds, with bytecode writing on).
A third side reports `get` with no bytecode at all (PYTHONDONTWRITEBYTECODE and an
empty PYTHONPYCACHEPREFIX, so the standard library compiles too): the worst case of a
machine that never keeps `.pyc` files.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Row, Side, Target, alternate, fmt_time
from benchmarks.workspace import DOCS_EXAMPLE, Ctx, fixture, work_dir


def rows() -> list[Row]:
    return [
        Row("i16a", "`moltis-ledger get server.port` wall time / `python -c pass` "
            "(bytecode present)", Target("<=", 2.5)),
        Row("i16b", "`moltis-ledger --version` wall time / `python -c pass`",
            Target("<=", 1.5)),
        Row("i16c", "`moltis-ledger get server.port` without any bytecode / `python -c "
            "pass` with bytecode", Target("report", text="report")),
        Row("i16n", "`python -c 'import click, msgspec'` / `python -c pass`: the floor of the "
            "two libraries every click command imports", Target("report", text="report")),
        Row("i16o", "`python -c 'import msgspec, apsw, blake3, tomllib, json'` (msgspec "
            "imported as `get` imports it, without typing_extensions) / `python -c pass`: "
            "the floor under i16a of the libraries `get` imports (its fast path loads no "
            "click, logging or dataclasses)", Target("report", text="report")),
    ]


# What `get` itself cannot avoid importing: the libraries its answer goes through
# (msgspec: the event and document types; apsw, blake3: the ledger; tomllib: moltis.toml,
# which says which store the gateway reads; json: the head mark), msgspec imported the
# way `ledger.cli.fast` imports it (typing's own get_type_hints, no typing_extensions).
GET_LIBRARIES = ("import sys; sys.modules['typing_extensions'] = None; import msgspec; "
                 "del sys.modules['typing_extensions']; import apsw, blake3, tomllib, json")


def _script() -> list[str]:
    script = Path(sys.executable).with_name("moltis-ledger")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledger"]


def run(ctx: Ctx, rows_by_fig: dict[str, Row]) -> None:
    home = work_dir() / "cli-start"
    shutil.rmtree(home, ignore_errors=True)
    (home / "config").mkdir(parents=True)
    shutil.copyfile(fixture(DOCS_EXAMPLE), home / "config" / "moltis.toml")
    env = dict(os.environ, MOLTIS_CONFIG_DIR=str(home / "config"),
               MOLTIS_DATA_DIR=str(home / "data"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    cli = _script()
    subprocess.run([*cli, "migrate", "--reason", "bench"], env=env, check=True,
                   capture_output=True, timeout=120)
    no_pyc = tempfile.mkdtemp(prefix="no-pyc-")
    bare = dict(env, PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=no_pyc)

    def side(name: str, argv: list[str], environ: dict[str, str], expect: str) -> Side:
        def block(n: int) -> float:
            total = 0.0
            for _ in range(n):
                t0 = time.perf_counter()
                out = subprocess.run(argv, env=environ, capture_output=True, text=True,
                                     timeout=120, check=False)
                total += time.perf_counter() - t0
                if out.returncode != 0 or expect not in out.stdout:
                    raise RuntimeError(f"{argv}: {out.returncode} {out.stderr[-500:]}")
            return total

        return Side(name, block, 3 if ctx.sizes.quick else 10, warmup=2)

    sides = [side("pass", [sys.executable, "-c", "pass"], env, ""),
             side("get", [*cli, "get", "server.port"], env, "13131"),
             side("version", [*cli, "--version"], env, "version"),
             side("get-no-pyc", [*cli, "get", "server.port"], bare, "13131"),
             side("floor", [sys.executable, "-c", "import click, msgspec"], env, ""),
             side("get-floor", [sys.executable, "-c", GET_LIBRARIES], env, "")]
    try:
        alt = alternate(sides, ctx.sizes.rounds)
    finally:
        shutil.rmtree(no_pyc, ignore_errors=True)
    t_pass = alt.median("pass")
    floor = statistics.median(alt.ratios("get-floor", "pass"))
    over = {name: fmt_time(alt.median(name) - t_pass) for name in ("get", "version")}
    # each figure with a target has its own note of what limits it (the report-only
    # ones never miss): a note about `get` under i16b would send a reader the wrong way
    notes = {
        "i16a": (
            f"{over['get']} over a bare interpreter; `get` loads no click, logging, "
            "dataclasses, typing_extensions or inspect, nothing only a write uses, runs "
            "without the cyclic collector and skips the exit's final collection "
            "(gc.freeze), but importing the libraries it needs is already "
            f"{floor:.2f}x `python -c pass` in this run (i16o; msgspec itself loads typing, "
            "uuid with platform, decimal, datetime, textwrap and msgspec.inspect), the "
            "rest is mostly importing the ledger's 52 own modules (the import system's "
            "stat and unmarshal per module), then the work (a few ms: opening SQLite, "
            "parsing moltis.toml, the hand-edit digest and head mark checks; see "
            "`python -X importtime -m ledger get server.port`)"),
        "i16b": (
            f"{over['version']} over a bare interpreter; `--version` is answered by "
            "`ledger.cli.main` before click or any command module is imported, so what "
            "is left is the console script's own start and `import ledger` (the "
            "package's __init__ and what it imports), plus, in an editable install, its "
            "path finder on every start; see `python -X importtime -m ledger --version`"),
    }
    for fig, name in (("i16a", "get"), ("i16b", "version"), ("i16c", "get-no-pyc"),
                      ("i16n", "floor"), ("i16o", "get-floor")):
        row = rows_by_fig[fig]
        row.measured = (f"{name} {fmt_time(alt.median(name))}, python -c pass "
                        f"{fmt_time(t_pass)}")
        row.judge_rounds(alt.ratios(name, "pass"), note_if_missed=notes.get(fig, ""))
