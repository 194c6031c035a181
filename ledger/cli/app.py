"""`moltis-ledger` (also `python -m ledger`): the operator's command line.

This module holds the click group, the global options, how the ledger is located and
opened, and the entry points. The commands live in `config_cmds` (migrate, show, get,
set, unset, check), `history_cmds` (log, diff, blame, rollback, export) and
`admin_cmds` (verify, bundles, backup/restore, watch, shred, snapshots, providers,
demo); rendering in `render`, the guided tour in `demo`. Commands import the library
inside their functions so that start-up stays cheap for the command that runs.

Each command parses its arguments, calls the library (`ledger.ops`, the stores) and
renders the result; there is no business logic in the CLI. The
library's exception tree is mapped to exit codes in one place, `exit_code_for()`, and
`run()` is the only place that prints an error. Only the CLI configures logging.

This module is long because everything every command shares lives here once: the lazy
command table, the global options, locating and opening the ledger, and error mapping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, cast

import click

from ledger import __version__
from ledger.cli.render import Output, configure_logging
from ledger.errors import (
    ConflictError,
    LedgerError,
    ParseError,
    ReadOnlyError,
    StoreBusyError,
    VerificationError,
)
from ledger.files import dirs

if TYPE_CHECKING:  # the CLI starts fast: the library is imported by the commands that use it
    from ledger.core.chain import VerifyReport
    from ledger.engine.ledger import Commit
    from ledger.engine.vault import Vault
    from ledger.ops.open_store import Installation
    from ledger.stores.ledger_store import LedgerConfigStore

__all__ = ["COMMANDS", "LazyGroup", "cli", "exit_code_for", "main", "run"]

F = TypeVar("F", bound=Callable[..., Any])
DSN_PREFIXES = ("postgresql://", "postgres://")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_VERIFY, EXIT_CONFLICT, EXIT_LOCKED = 0, 1, 2, 3, 4, 5
_verbosity = 0  # set by the group callback; decides whether run() prints tracebacks
_json_errors = False  # set by --json (before or after the command); run() reads it


def is_dsn_text(location: str) -> bool:
    from ledger.backends.open import is_dsn  # the one rule for "path or DSN?"

    return is_dsn(location)


def exit_code_for(err: BaseException) -> int:
    """The one mapping from the library's exceptions to exit codes."""
    if isinstance(err, VerificationError):
        return EXIT_VERIFY
    if isinstance(err, ConflictError):
        return EXIT_CONFLICT
    if isinstance(err, ReadOnlyError | StoreBusyError):
        return EXIT_LOCKED
    return EXIT_ERROR


class CommandError(Exception):
    """A command's own failure (a chain that does not verify, a missing ledger).

    `kind` is the stable `code` of the `--json` error object; `hint` what to do next."""

    def __init__(self, message: str, code: int = EXIT_ERROR, *, kind: str = "error",
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.hint = hint


# ---------------------------------------------------------------------------------
# the shared state of one invocation


@dataclasses.dataclass
class State:
    """Global options, and the ledger opened (once) for the command."""

    config_dir: str | None = None
    data_dir: str | None = None
    db: str | None = None
    json: bool = False
    actor: str | None = None
    reason: str | None = None
    busy_timeout: float = 5.0
    read_only: bool = False
    verbose: int = 0
    out: Output = dataclasses.field(default_factory=Output)
    _store: LedgerConfigStore | None = None
    # verify checks the head mark itself (a report, not an error on open); sign-head
    # --adopt accepts a head older than it (ledger.engine.head_mark)
    accept_older_head: bool = False

    _inst: Installation | None = None
    warned: bool = False  # the "the gateway does not read this ledger" warning, once

    @property
    def installation(self) -> Installation:
        """The config and data directories, found and the config file parsed once per
        invocation (the same `Installation` `open_store()` starts from)."""
        if self._inst is None:
            from ledger.ops.open_store import Installation

            self._inst = Installation.find(self.config_dir, self.data_dir, os.environ)
        return self._inst

    @property
    def config_home(self) -> Path:
        return self.installation.config_home

    @property
    def data_home(self) -> Path:
        return self.installation.data_home

    @property
    def config_file(self) -> Path:
        return self.installation.config_file

    @property
    def keys_file(self) -> Path:
        return self.installation.keys_file

    def refresh_installation(self) -> None:
        """Find and parse the files again (after this command changed them)."""
        self._inst = None

    def gateway(self) -> tuple[str, str | None]:
        """(backend, location) the gateway's `open_store()` uses."""
        return self.installation.select()

    def location(self) -> tuple[str, str]:
        """(backend, location): the ledger in the data directory by default, PostgreSQL
        for a DSN (from --db, or Moltis's own settings: MOLTIS_CONFIG_BACKEND/_DSN or
        [config] in moltis.toml). Never the file store: the CLI works on the ledger."""
        inst = self.installation
        if self.db is not None:
            from ledger.backends.open import backend_kind

            backend = backend_kind(self.db)
        else:
            try:
                configured, _ = inst.select()
            except ParseError:
                configured = "sqlite"  # a broken moltis.toml must not stop `check`/`show`
            backend = "postgres" if configured == "postgres" else "sqlite"
        try:
            name, location = inst.select(backend=backend, db=self.db)
        except ParseError:
            name, location = backend, self.db or str(dirs.default_db_path(self.data_home))
        assert location is not None
        return name, location

    def store(self, *, write: bool = False, sync: bool = True) -> LedgerConfigStore:
        """The ledger; read commands open it read-only and never create it. A hand edit
        of moltis.toml is imported first when the ledger is opened for writing."""
        if self._store is not None:
            return self._store
        name, location = self.location()
        if name == "sqlite" and not write and not Path(location).exists():
            raise CommandError(f"no ledger at {location}: run `moltis-ledger migrate` to "
                               "create it from moltis.toml, or name one with --db / "
                               "--data-dir")
        try:
            store = self._open(name, location, read_only=self.read_only or not write)
        except ReadOnlyError as err:
            if write or self.read_only:
                raise
            # a read-only open of a database without ledger tables
            raise CommandError(f"no ledger yet ({err}): run `moltis-ledger migrate` "
                               "first") from None
        from ledger.ops.open_store import attach_files, sync_hand_edit

        store.ledger.accept_older_head = self.accept_older_head
        attach_files(store, self.installation)
        self._store = store
        if sync:
            self.warn_if_not_gateway(name, location)
            if write:
                problem = sync_hand_edit(store, self.installation)
                if problem:
                    self.out.warn(problem)
            else:
                pending = self._pending_hand_edit(store)
                if pending is not None:
                    self._import_hand_edit(name, location, pending=pending)
        return store

    def _import_hand_edit(self, name: str, location: str, *, pending: bool = True) -> None:
        """A read opens the ledger read-only; a pending hand edit is imported first
        through a short writable open (as the gateway's open_store() does), unless
        --read-only, where it is only reported. A file whose content is already in the
        ledger but whose bytes are not (`pending` False: a comment changed) gets its
        digest recorded the same way, best effort, so the next command is cheap again."""
        from ledger.ops.open_store import attach_files, sync_hand_edit

        if self.read_only:
            if pending:
                self.out.warn(f"{self.config_file} was edited since the last import; "
                              "without --read-only the next command imports it as an event")
            return
        try:
            writer = self._open(name, location, read_only=False)
            try:
                # the import is a write like any other: the head mirror the gateway
                # falls back to follows it (attach_files hooks it to every commit)
                attach_files(writer, self.installation)
                problem = sync_hand_edit(writer, self.installation)
            finally:
                writer.ledger.close()
        except (LedgerError, OSError):
            if pending:
                raise
            # only the digest (a cache) could not be written: read-only media,
            # permissions, another writer's lock; the read goes on
            return
        if problem:
            self.out.warn(problem)

    def warn_if_not_gateway(self, name: str, location: str) -> None:
        """Say so (stderr) when the gateway's open_store() would not read this ledger."""
        if self.warned:
            return
        self.warned = True
        try:
            gw_name, gw_location = self.gateway()
        except LedgerError:
            return
        if gw_name == name and (gw_location == location or (
                gw_location is not None and not is_dsn_text(location)
                and os.path.abspath(gw_location) == os.path.abspath(location))):
            return
        from ledger.ops.open_store import describe_location

        what = (f"the file store ({self.config_file})" if gw_name == "file"
                else f"the {gw_name} ledger at {describe_location(gw_location)}")
        self.out.warn(f"the gateway does not read this ledger: its open_store() uses {what}. "
                      f"`moltis-ledger switch-backend {name}` makes it use this one")

    def hand_edit_poller(self, store: LedgerConfigStore) -> Callable[[], None]:
        """For `watch` on a read-only open: import a hand edit as soon as the config
        file changes (a short writable open, as for any read command)."""
        from ledger.files.change_key import file_stat_key, settled

        seen = {"stat": file_stat_key(self.config_file)}

        def poll() -> None:
            key = file_stat_key(self.config_file)
            if key == seen["stat"] or not settled(key):
                return
            seen["stat"] = key
            self.refresh_installation()
            if self._pending_hand_edit(store):
                self._import_hand_edit(*self.location())

        return poll

    def _pending_hand_edit(self, store: LedgerConfigStore) -> bool | None:
        """Whether the config file holds a hand edit to import: None when it is known to
        be in step (its digest checks: nothing heavy is loaded), else the full check's
        answer (False: the content is imported, only the bytes differ)."""
        import json

        from ledger.ops.file_digest import META_CONFIG, can_record, in_step

        inst = self.installation
        previous = store.ledger.backend.get_meta(META_CONFIG)
        if inst.doc is None or previous is None or in_step(store.ledger, inst.config_file,
                                                           inst.data):
            return None
        from ledger.ops.hand_edit import pending_hand_edit

        if pending_hand_edit(store.ledger, inst.doc, json.loads(previous)):
            return True
        return False if can_record(store.ledger) else None  # no key: no digest to record

    def _open(self, name: str, location: str, *, read_only: bool) -> LedgerConfigStore:
        from ledger.engine.vault import KeySource
        from ledger.ops.open_store import open_ledger

        keys = KeySource(key_file=dirs.default_key_file(self.config_home), env=os.environ)
        return open_ledger(location, read_only=read_only, busy_timeout=self.busy_timeout,
                           keys=keys)

    def close(self) -> None:
        if self._store is not None:
            self._store.ledger.close()
            self._store = None

    def seq(self, ref: str | None) -> int:
        """A REF (seq, -N, head, a time) as a seq; None is the head."""
        store = self.store()
        if ref is None:
            return store.ledger.head_state().seq
        from ledger.engine.queries import resolve_ref

        return resolve_ref(store.ledger, ref, strict=True)

    def write_kw(self, expected_seq: int | None = None) -> dict[str, Any]:
        return {"actor": self.actor, "reason": self.reason, "source": "cli",
                "expected_seq": expected_seq}


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


def _error_kind(err: BaseException) -> str:
    """The stable `code` of a `--json` error object for a library exception."""
    from ledger.errors import ConfigValidationError, InvalidPathError

    if isinstance(err, VerificationError):
        return "verification-failed"
    if isinstance(err, ConflictError):
        return "conflict"
    if isinstance(err, StoreBusyError):
        return "busy"
    if isinstance(err, ReadOnlyError):
        return "read-only"
    if isinstance(err, ConfigValidationError):
        return "invalid-value"
    if isinstance(err, InvalidPathError):
        return "invalid-path"
    if isinstance(err, ParseError):
        return "parse-error"
    return "error"


def _error_hint(err: BaseException) -> str | None:
    from ledger.errors import ConfigValidationError, InvalidPathError

    if isinstance(err, StoreBusyError):
        return "another process is writing: retry, or wait longer with --busy-timeout SECONDS"
    if isinstance(err, ConflictError):
        return "the ledger moved on: read it again (`moltis-ledger log --limit 1`) and retry"
    if isinstance(err, InvalidPathError):
        return ("a PATH is dotted TOML keys (tools.exec.sandbox.mode), quoted where needed "
                "(models.\"gpt-5.5\".context_window); keys:NAME.field names provider_keys.json")
    if isinstance(err, ConfigValidationError):
        return "see `moltis-ledger check` for every problem, and the value's type in docs/cli.md"
    return None


class _Reporter:
    """Prints the one error of a run: a line on stderr, or with --json one JSON object
    (`error`, `code`, `hint`, `exit_code`) on stdout; the exit code is the same."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.out = Output()

    def __call__(self, message: str, exit_code: int, *, kind: str,
                 hint: str | None = None) -> int:
        if self.json_mode and not Output.json_printed:
            self.out.json({"error": message, "code": kind, "hint": hint,
                           "exit_code": exit_code})
        else:
            self.out.error(message)
            if hint:
                self.out.note(hint)
        return exit_code


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
    report = _Reporter(_wants_json(args))
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
    except CommandError as failure:
        report.json_mode = report.json_mode or _json_errors
        return report(str(failure), failure.code, kind=failure.kind, hint=failure.hint)
    except LedgerError as failure:
        report.json_mode = report.json_mode or _json_errors
        message = str(failure)
        if isinstance(failure, VerificationError) and failure.seq is not None and (
                f"seq {failure.seq}" not in message):
            message += f" (first bad seq {failure.seq})"
        return report(message, exit_code_for(failure), kind=_error_kind(failure),
                      hint=_error_hint(failure))
    except BrokenPipeError:
        with contextlib.suppress(OSError):  # the reader went away (| head): be quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except OSError as oserr:
        report.json_mode = report.json_mode or _json_errors
        return report(str(oserr), EXIT_ERROR, kind="os-error")
    except Exception as unexpected:
        if _verbosity > 0:
            traceback.print_exc(file=sys.stderr)
        report.json_mode = report.json_mode or _json_errors
        return report(f"unexpected {type(unexpected).__name__}: {unexpected}", EXIT_ERROR,
                      kind="internal-error",
                      hint=None if _verbosity > 0 else "rerun with -v for the traceback")
    return rv if isinstance(rv, int) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    """The console script `moltis-ledger`."""
    sys.exit(run(argv))


# ---------------------------------------------------------------------------------
# small helpers shared by the commands


def run_async(coro: Any) -> Any:
    import asyncio  # only the commands that call the async API pay for asyncio

    return asyncio.run(coro)


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


def doc_path(text: str, *, allow_root: bool = False
             ) -> tuple[Literal["config", "keys"], tuple[str, ...]]:
    """`keys:openai.apiKey` names provider_keys.json; anything else moltis.toml (the one
    path grammar, `ledger.core.keypaths.parse_doc_path`)."""
    from ledger.core.keypaths import parse_doc_path

    return parse_doc_path(text, allow_root=allow_root)


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
