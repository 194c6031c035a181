"""The argv fast path of `moltis-ledger get PATH`: the command most often run from
scripts (`$(moltis-ledger get server.port)`) answered without importing click.

Only the parsing differs from the click command: the same `State`, the same command
body (`config_read.run_get`: the same ledger opening, trust checks and output) and the
same error report (`base.report_failure`) run. The parser knows exactly one shape:

    moltis-ledger [--db V] [--config-dir V] [--data-dir V] [--json] [--read-only] get PATH [--json]

(each option value also as `--db=V`). Anything else, including `-h`, an unknown or
malformed option, a second argument, `--`, or an option value that click would refuse
or read differently, returns None and click parses the whole command line as before, so
help, usage errors and their messages stay click's.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import sys
from collections.abc import Iterator, Sequence

__all__ = ["run_fast"]

_VALUED = ("--db", "--config-dir", "--data-dir")
_DIRS = ("--config-dir", "--data-dir")
# click's shell completion runs when this variable is set: click must see that run
_COMPLETE_VAR = "_MOLTIS_LEDGER_COMPLETE"


def _click_would_refuse_dir(value: str) -> bool:
    """What `click.Path(file_okay=False)` (exists=False, readable=True) refuses: an
    existing regular file, or an existing path this process cannot read."""
    try:
        st = os.stat(value)
    except OSError:
        return False  # a path that does not exist (yet) is accepted as given
    return stat.S_ISREG(st.st_mode) or not os.access(value, os.R_OK)


class Parsed:
    """What the fast path understood: the global options and PATH of `get`."""

    __slots__ = ("config_dir", "data_dir", "db", "json", "path", "read_only")

    def __init__(self) -> None:
        self.db: str | None = None
        self.config_dir: str | None = None
        self.data_dir: str | None = None
        self.json = False
        self.read_only = False
        self.path: str | None = None


def parse(args: Sequence[str]) -> Parsed | None:
    """The global options and PATH of `get`, or None for anything else."""
    found = Parsed()
    i, command_seen = 0, False
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--json":
            found.json = True
        elif not command_seen:
            name, eq, value = arg.partition("=")
            if arg == "--read-only":
                found.read_only = True
            elif name in _VALUED:
                if not eq:
                    if i >= len(args):
                        return None
                    value = args[i]
                    i += 1
                if value.startswith("-") or (name in _DIRS and _click_would_refuse_dir(value)):
                    return None  # click reads or refuses these its own way
                setattr(found, name[2:].replace("-", "_"), value)
            elif arg == "get":
                command_seen = True
            else:
                return None
        elif found.path is None and not arg.startswith("-"):
            found.path = arg
        else:
            return None
    return found if command_seen and found.path is not None else None


def _import_msgspec_without_typing_extensions() -> None:
    """msgspec's first import loads typing_extensions (and with it inspect, ast, dis,
    tokenize: a tenth of `get`'s start) only to take `get_type_hints`, `Required` and
    `NotRequired` from it, and falls back to `typing`'s own when it is absent
    (msgspec/_utils.py). On Python >= 3.11 (this package's floor) those are the same for
    every type the ledger declares (no module here uses typing_extensions). It is hidden
    for that one import only: a later `import typing_extensions` gets the real module."""
    if "msgspec" in sys.modules or "typing_extensions" in sys.modules:
        return
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]
    try:
        import msgspec  # (this import is the point)
    except ImportError:
        pass  # a msgspec that requires it after all: imported the normal way below
    finally:
        if sys.modules.get("typing_extensions", False) is None:
            del sys.modules["typing_extensions"]
    import msgspec  # noqa: F401  (a no-op unless the import above was refused)


def run_fast(args: Sequence[str], *, process_ends: bool = False) -> int | None:
    """The exit code of `get` run without click, or None: click must parse `args`.
    `process_ends`: the interpreter exits after the command (see `_collector_off`)."""
    if os.environ.get(_COMPLETE_VAR):
        return None
    found = parse(args)
    if found is None or found.path is None:
        return None
    # the parse is settled: from here on this is the command, as click's run() runs it
    with _collector_off(freeze=process_ends):
        return _run(found, found.path)


@contextlib.contextmanager
def _collector_off(*, freeze: bool) -> Iterator[None]:
    """The command runs without the cyclic collector: its passes over the objects the
    imports keep creating (all long-lived, none garbage) cost `get` a few ms (issue 16,
    i16a); the work is bounded and what it frees goes by reference counting. The host's
    setting is restored after it.

    `freeze`, when the process ends with the command: everything alive is frozen
    (`gc.freeze`) before the collector is back on, so neither the first collection after
    it (all of the run's ~15,000 objects are in the youngest generation) nor the exit's
    final full collection passes over them. Nothing the exit must do waits on them: the
    command closed the ledger itself, reference counting still frees each module's
    objects as the modules are cleared, and exit work runs in atexit hooks. (A host that
    calls `main()` without argv and catches SystemExit keeps the objects of that one run
    out of its collections.)"""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if collecting:
            gc.enable()


def _run(found: Parsed, path: str) -> int:
    """`get PATH` with the options in `found`: imports, runs and reports as click's run() does."""
    _import_msgspec_without_typing_extensions()
    from ledger.cli.base import EXIT_OK, Reporter, State, report_failure
    from ledger.cli.config_read import run_get
    from ledger.cli.render import Output, configure_logging_when_needed

    Output.json_printed = False
    # what the group callback does (-v is click's), made when the library first checks
    # a line against logging: `get` usually logs nothing and never loads logging
    cancel_logging = configure_logging_when_needed(0)
    try:
        report = Reporter(found.json)
        state = State(config_dir=found.config_dir, data_dir=found.data_dir, db=found.db,
                      json=found.json, read_only=found.read_only,
                      out=Output(json_mode=found.json))
        try:
            try:
                run_get(state, path, None, False)
            finally:
                state.close()  # what click's context does on the way out
        except (Exception, KeyboardInterrupt) as failure:  # reported, once
            return report_failure(failure, report, json_errors=found.json, verbosity=0)
        return EXIT_OK
    finally:
        # the command has ended: a host running it in-process (ledger.cli.main) keeps
        # the logging it configures later, as it did when the CLI's set-up ran at once
        cancel_logging()
