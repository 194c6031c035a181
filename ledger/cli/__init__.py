"""`moltis-ledger` (also `python -m ledger`): the operator's command line.

`app` holds the click group, the global options and the entry points; the command
modules attach their commands to it when imported here, so nothing below imports
upward: `render` <- `app` <- `*_cmds` <- this package.
"""

from ledger.cli import (  # noqa: F401  (registers the commands)
    admin_cmds,
    config_cmds,
    history_cmds,
    serve_cmd,
    switch_cmds,
)
from ledger.cli.app import cli, exit_code_for, main, run

__all__ = ["cli", "exit_code_for", "main", "run"]
