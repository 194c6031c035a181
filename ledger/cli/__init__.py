"""`moltis-ledger` (also `python -m ledger`): the operator's command line.

`app` holds the click group, the global options, the entry points and the table of
which module defines each command; a command module is imported (and attaches its
commands to the group) only when one of its commands runs, so the CLI starts fast.
Nothing below imports upward: `render` <- `app` <- `*_cmds`.

This package itself imports nothing heavy: `main` answers `--version` without loading
click, runs `get PATH` (with the global options it shares with click) through the
argv fast path of `fast` (same command body, no click), and `cli`, `run` and
`exit_code_for` load `app` on first use (PEP 562).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.cli.app import cli, exit_code_for, run

__all__ = ["cli", "exit_code_for", "main", "run"]


def main(argv: Sequence[str] | None = None) -> None:
    """The console script `moltis-ledger`."""
    args = sys.argv[1:] if argv is None else list(argv)
    if sys.stdout is None or sys.stderr is None:  # started with `>&-` or `2>&-`
        from ledger.cli.std_streams import guard_closed_streams

        guard_closed_streams()
    if args == ["--version"]:  # what click's version option prints, without click
        from ledger import __version__

        sys.stdout.write(f"moltis-ledger, version {__version__}\n")
        sys.exit(0)
    from ledger.cli.fast import run_fast  # `get PATH`: the same command without click

    # argv None: this process's own command line (the console script, `python -m
    # ledger`), which ends with the command
    code = run_fast(args, process_ends=argv is None)
    if code is not None:
        sys.exit(code)
    from ledger.cli.app import main as run_main

    run_main(args)


def __getattr__(name: str) -> Any:
    if name in ("cli", "exit_code_for", "run"):
        from ledger.cli import app

        return getattr(app, name)
    raise AttributeError(f"module 'ledger.cli' has no attribute {name!r}")
