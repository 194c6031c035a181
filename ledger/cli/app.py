"""`moltis-ledger` (also `python -m ledger`): the operator's command line.

This module holds the click group, the global options and the entry points. The
commands live in `config_cmds` (show, get, set, unset, check), `history_cmds` (log,
diff, blame, rollback, export), `admin_cmds` (verify, bundles, backup/restore, watch,
shred, snapshots, providers, demo), `switch_cmds` (migrate, switch-backend); what they
share without click (exit codes, `State`: locating and opening the ledger, error
reports) in `base`; rendering in `render`. Commands import the library inside their
functions so that start-up stays cheap for the command that runs, and `ledger.cli.fast`
runs the plain read commands without click at all (the same command bodies).

Each command parses its arguments, calls the library (`ledger.ops`, the stores) and
renders the result; there is no business logic in the CLI. The
library's exception tree is mapped to exit codes in one place, `exit_code_for()`, and
`run()` (or the fast path, through the same `base.report_failure`) is the only place
that prints an error. Only the CLI configures logging.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import click

from ledger import __version__
from ledger.cli.base import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VERIFY,
    CommandError,
    ReaderGone,
    Reporter,
    State,
    doc_path,
    exit_code_for,
    report_failure,
    run_async,
)
from ledger.cli.render import Output, configure_logging

if TYPE_CHECKING:  # the CLI starts fast: the library is imported by the commands that use it
    from ledger.core.chain import VerifyReport
    from ledger.engine.ledger import Commit
    from ledger.engine.vault import Vault

# the names of `base` stay importable from here, where the command modules found them
__all__ = ["COMMANDS", "EXIT_CONFLICT", "EXIT_ERROR", "EXIT_LOCKED",
           "EXIT_OK", "EXIT_USAGE", "EXIT_VERIFY", "CommandError", "LazyGroup", "State",
           "cli", "doc_path", "exit_code_for", "main", "run", "run_async"]

F = TypeVar("F", bound=Callable[..., Any])
_verbosity = 0  # set by the group callback; decides whether run() prints tracebacks
_json_errors = False  # set by --json (before or after the command); run() reads it


pass_state = click.make_pass_decorator(State)


# ---------------------------------------------------------------------------------
# option bundles


def _set(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        state = ctx.find_object(State)
        if state is None or value is None or value is False:
            return
        if name == "json":
            global _json_errors  # noqa: PLW0603 - run() needs it after the context is gone
            _json_errors = True
            state.json = state.out.json_mode = True
        elif name == "verbose":
            if value:
                state.verbose += value
                _configure(state.verbose)
        else:
            setattr(state, name, value)

    return callback


def _configure(verbosity: int) -> None:
    global _verbosity  # noqa: PLW0603 - run() needs it after the context is gone
    _verbosity = verbosity
    configure_logging(verbosity)


def common(fn: F) -> F:
    """--json and -v, accepted after the command name too."""
    fn = click.option("--json", "json_", is_flag=True, expose_value=False,
                      callback=_set("json"),
                      help="Print one JSON document on stdout and nothing else.")(fn)
    return click.option("-v", "--verbose", "verbose_", count=True, expose_value=False,
                        callback=_set("verbose"), help="Log INFO (-vv: DEBUG) to stderr.")(fn)


def writes(fn: F) -> F:
    """--actor and --reason, accepted after the command name too."""
    fn = click.option("--reason", "reason_", expose_value=False, callback=_set("reason"),
                      help="Why (recorded in the event).")(fn)
    return click.option("--actor", "actor_", expose_value=False, callback=_set("actor"),
                        help="Who (default: $MOLTIS_LEDGER_ACTOR, else user@host).")(fn)


def expected_seq_option(fn: F) -> F:
    return click.option("--expected-seq", type=click.IntRange(min=0), default=None,
                        help="Refuse (exit 4) unless the ledger is still at this seq.")(fn)


REF_HELP = ("a seq (12), -N (N events back), head, or a UTC time: ISO-8601 "
            "(2026-11-24T09:00:00Z) or words: now, today, yesterday, a weekday (tuesday, "
            "last tuesday), with a clock time (yesterday 18:00, 18:00), or an age (2h, "
            "1h30m, 3 days ago, 1w)")
AT_HELP = f"As of REF: {REF_HELP}; default head."


def at_option(fn: F) -> F:
    return click.option("--at", "ref", metavar="REF", default=None, help=AT_HELP)(fn)


def _hash(_ctx: click.Context, _param: click.Parameter, value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a hex hash") from None
    if len(raw) != 32:
        raise click.BadParameter(f"{value!r} is not a 32-byte (64 hex digit) hash")
    return raw


def expect_head_option(fn: F) -> F:
    return click.option("--expect-head", metavar="HASH", callback=_hash,
                        help="A head hash recorded earlier: also catch a truncated log.")(fn)


# ---------------------------------------------------------------------------------
# the group

# Which module defines each top-level command. A command module is imported only when
# its command runs (or for help that lists every command), so `get` does not pay for
# the imports of `demo` or `export`. A new command goes here too; a test checks that
# every command a module defines is in this table and vice versa.
COMMANDS: dict[str, str] = {
    **dict.fromkeys(("show", "get", "set", "unset", "check"), "ledger.cli.config_cmds"),
    **dict.fromkeys(("log", "diff", "blame", "rollback", "export"), "ledger.cli.history_cmds"),
    **dict.fromkeys(("verify", "verify-bundle", "bundle", "import-bundle", "backup",
                     "restore", "watch", "shred", "checkpoint", "rebuild-snapshots", "providers",
                     "demo", "sign-head"),
                    "ledger.cli.admin_cmds"),
    **dict.fromkeys(("migrate", "switch-backend", "unseal-backup"), "ledger.cli.switch_cmds"),
    "serve": "ledger.cli.serve_cmd",
    "key": "ledger.cli.key_cmds",
}


class LazyGroup(click.Group):
    """A click group whose commands are registered by their modules on first use.

    The modules attach their commands with `@cli.command()` when imported (so they
    import this module, never the other way round); `get_command` imports the one
    module that defines the name asked for, `list_commands` names every command of the
    table, so `-h` and "No such command" suggestions stay complete."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name])
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as gone:
            # click ends a broken pipe itself with exit 1; `run` ends it as git does
            raise ReaderGone(str(gone)) from gone

    def load_all(self) -> dict[str, click.Command]:
        """Every command (imports every command module): for docs and tests."""
        for module in dict.fromkeys(COMMANDS.values()):
            importlib.import_module(module)
        return dict(self.commands)



EPILOG = """\b
Exit codes:
  0  ok
  1  error (bad input, missing file, check found problems)
  2  usage (unknown command or option, malformed option value)
  3  verification failed (verify, verify-bundle, restore of a bad file)
  4  conflict (--expected-seq no longer matches the ledger)
  5  read-only or locked (another writer held the lock past --busy-timeout)
  141  the reader of the output went away (`| head`), as for git

\b
REF: a seq (12), -N (N events back), head, or a UTC time: ISO-8601
(2026-11-24T09:00:00Z) or words (now, today, yesterday, tuesday, "last tuesday
18:00", 2h, 1h30m, "3 days ago", 1w). PATH: a dotted key
(tools.exec.sandbox.mode), or keys:NAME.field for provider_keys.json
(keys:openai.apiKey); every command that takes a path reads this one grammar.
"""


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="moltis-ledger")
@click.option("--config-dir", type=click.Path(file_okay=False), default=None,
              help="Where moltis.toml lives (default: $MOLTIS_CONFIG_DIR, ~/.config/moltis).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Moltis's data directory (default: $MOLTIS_DATA_DIR, ~/.moltis).")
@click.option("--db", metavar="PATH_OR_DSN", default=None,
              help="The ledger: a SQLite file or a postgresql:// DSN "
                   "(default: <data dir>/moltis.db).")
@click.option("--json", "json_", is_flag=True, help="One JSON document on stdout.")
@click.option("--actor", default=None, help="Who makes the change (written commands).")
@click.option("--reason", default=None, help="Why (written commands).")
@click.option("--busy-timeout", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds to wait for another writer's lock before exit 5.")
@click.option("--read-only", is_flag=True, help="Open the ledger read-only (writes exit 5).")
@click.option("-v", "--verbose", count=True, help="Log INFO (-vv: DEBUG) to stderr.")
@click.pass_context
def cli(ctx: click.Context, config_dir: str | None, data_dir: str | None, db: str | None,
        json_: bool, actor: str | None, reason: str | None, busy_timeout: float,
        read_only: bool, verbose: int) -> None:
    """The configuration ledger of a Moltis gateway: who changed what, when and why;
    any past state; rollback; export back to files; tamper-evident history.

    Reads and writes the ledger (<data dir>/moltis.db by default). Start with
    `migrate`, which imports moltis.toml and provider_keys.json after a backup.

    Example:

    \b
        moltis-ledger demo                 # a guided tour in a temporary folder
        moltis-ledger migrate
        moltis-ledger set server.port 8080 --reason "free 13131 for the proxy"
        moltis-ledger log --limit 5
        moltis-ledger --json show | jq .server
    """
    global _json_errors  # noqa: PLW0603 - run() needs it after the context is gone
    _json_errors = _json_errors or json_
    _configure(verbose)
    state = State(config_dir=config_dir, data_dir=data_dir, db=db, json=json_, actor=actor,
                  reason=reason, busy_timeout=busy_timeout, read_only=read_only,
                  verbose=verbose, out=Output(json_mode=json_))
    ctx.obj = state
    ctx.call_on_close(state.close)


# ---------------------------------------------------------------------------------
# entry points


def _wants_json(argv: Sequence[str]) -> bool:
    """--json anywhere before `--` (a usage error can stop parsing before its callback)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; every error is printed here, once."""
    global _json_errors  # noqa: PLW0603 - reset for each run (the demo runs several)
    _json_errors = False
    Output.json_printed = False
    args = list(argv) if argv is not None else sys.argv[1:]
    report = Reporter(_wants_json(args))
    try:
        rv = cli.main(args=args, prog_name="moltis-ledger", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.Abort as abort:
        if isinstance(abort.__cause__, KeyboardInterrupt):
            return 130
        return report("aborted", EXIT_ERROR, kind="aborted")
    except click.ClickException as usage:
        if not (report.json_mode or _json_errors):
            usage.show()
            return usage.exit_code
        ctx = getattr(usage, "ctx", None)
        where = ctx.command_path if ctx is not None else "moltis-ledger"
        report.json_mode = True
        return report(usage.format_message(), usage.exit_code,
                      kind="usage" if usage.exit_code == EXIT_USAGE else "error",
                      hint=f"`{where} --help` shows the usage and an example")
    except (Exception, KeyboardInterrupt) as failure:  # every failure is reported, once
        return report_failure(failure, report, json_errors=_json_errors,
                              verbosity=_verbosity)
    return rv if isinstance(rv, int) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    """The console script `moltis-ledger`."""
    sys.exit(run(argv))


# ---------------------------------------------------------------------------------
# small helpers shared by the commands


def read_value(label: str, *, hidden: bool) -> str:
    """A value typed at a prompt (hidden for secrets), or one line of piped stdin."""
    if sys.stdin is not None and sys.stdin.isatty():
        return str(click.prompt(label, hide_input=hidden, err=True))
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise CommandError(f"{label}: expected the value on stdin (or run in a terminal "
                           "to be prompted)")
    return line.rstrip("\r\n")


def verify_report_json(report: VerifyReport) -> dict[str, Any]:
    return {"ok": report.ok, "events": report.events, "head_seq": report.head_seq,
            "head_hash": report.head_hex, "first_bad_seq": report.first_bad_seq,
            "problem": report.problem, "key_fingerprint": report.key_fingerprint,
            "signed_seq": report.signed_seq, "mac_seq": report.mac_seq,
            "notes": list(report.notes)}


def text_io(obj: object) -> IO[str]:
    return cast(IO[str], obj)


def commit_json(commit: Commit, vault: Vault) -> dict[str, Any]:
    from ledger.ops.display import display_change

    return {"appended": commit.appended, "seq": commit.seq, "hash": commit.hash.hex(),
            "changes": [display_change(c, vault) for c in commit.changes]}


def render_commit(state: State, commit: Commit, *, nothing: str) -> None:
    """A write's outcome: the event appended and its changes, or why nothing was."""
    doc = commit_json(commit, state.store().ledger.vault)
    if state.json:
        state.out.json(doc)
    elif commit.appended:
        state.out.line(f"seq {commit.seq}: appended", "bold")
        state.out.changes(doc["changes"])
    else:
        state.out.line(f"{nothing}; nothing appended (head seq {commit.seq})")
