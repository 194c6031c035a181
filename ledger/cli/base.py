"""What every `moltis-ledger` command shares that does not need click: the exit codes,
`CommandError`, the invocation's `State` (global options, locating and opening the
ledger once), and how a failure is reported (one line on stderr, or one JSON object).

`ledger.cli.app` (the click group) and `ledger.cli.fast` (the argv fast path of the
plain read commands) both build a `State` and run the same command bodies with it, so
only the parsing differs between them. Importing this module loads neither click nor
the library (the commands import what they use).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ledger.cli.render import Output
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
    from collections.abc import Callable

    from ledger.engine.vault import KeySource
    from ledger.ops.installation import Installation
    from ledger.stores.ledger_store import LedgerConfigStore

__all__ = ["EXIT_CONFLICT", "EXIT_ERROR", "EXIT_LOCKED", "EXIT_OK", "EXIT_SIGPIPE",
           "EXIT_USAGE", "EXIT_VERIFY", "CommandError", "ReaderGone", "Reporter", "State",
           "doc_path", "error_hint", "error_kind", "exit_code_for", "report_failure",
           "run_async"]


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_VERIFY, EXIT_CONFLICT, EXIT_LOCKED = 0, 1, 2, 3, 4, 5
# The reader of stdout went away (`| head -1`): the status git and coreutils end with
# there (killed by SIGPIPE, 128 + 13 in the shell), without dying of the signal
EXIT_SIGPIPE = 141


class ReaderGone(Exception):  # noqa: N818 - what happened, not an error of the command
    """Stdout's reader went away (a BrokenPipeError that click would end with exit 1)."""


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


class State:
    """Global options, and the ledger opened (once) for the command.

    A plain class, not a dataclass: `get` starts without dataclasses and inspect
    (issue 16)."""

    def __init__(self, config_dir: str | None = None, data_dir: str | None = None,
                 db: str | None = None, json: bool = False, actor: str | None = None,
                 reason: str | None = None, busy_timeout: float = 5.0,
                 read_only: bool = False, verbose: int = 0, out: Output | None = None,
                 accept_older_head: bool = False) -> None:
        self.config_dir = config_dir
        self.data_dir = data_dir
        self.db = db
        self.json = json
        self.actor = actor
        self.reason = reason
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.verbose = verbose
        self.out = Output() if out is None else out
        self._store: LedgerConfigStore | None = None
        # verify checks the head mark itself (a report, not an error on open); sign-head
        # --adopt accepts a head older than it (ledger.engine.head_mark)
        self.accept_older_head = accept_older_head
        self._inst: Installation | None = None
        self.warned = False  # the "the gateway does not read this ledger" warning, once

    @property
    def installation(self) -> Installation:
        """The config and data directories, found and the config file parsed once per
        invocation (the same `Installation` `open_store()` starts from)."""
        if self._inst is None:
            from ledger.ops.installation import Installation

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
        if self.db == "":  # `--db=` (an unset shell variable): SQLite would open "."
            raise CommandError("--db is empty: give the ledger's SQLite file or a "
                               "postgresql:// DSN, or leave --db out for "
                               f"{dirs.default_db_path(self.data_home)}")
        if self.db is not None:
            from ledger.backends.open import backend_kind

            backend = backend_kind(self.db)
        else:
            try:
                configured, located = inst.select()
            except ParseError:  # a broken moltis.toml must not stop `check`/`show`
                configured, located = "sqlite", None
            if configured != "file" and located is not None:
                return configured, located  # the gateway's own ledger
            backend = "sqlite"
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
        from ledger.backends.open import same_location

        if gw_name == name and same_location(gw_location, location):
            return
        from ledger.ops.installation import describe_location

        what = (f"the file store ({self.config_file})" if gw_name == "file"
                else f"the {gw_name} ledger at {describe_location(gw_location)}")
        self.out.warn(f"the gateway does not read this ledger: its open_store() uses {what}. "
                      f"`moltis-ledger{self.db_option(name, location)} switch-backend "
                      f"{name}` moves the gateway to this one, carrying what it reads now")

    def db_option(self, name: str, location: str) -> str:
        """` --db LOCATION` naming this ledger in a command to run: always, since without
        it the command takes the ledger the gateway's files name, which is not this one
        (reviews r16, r20: the hint, run as printed, switched the gateway's own ledger
        or nothing). A DSN holding a password is not printed: `<DSN>` stands for it."""
        import shlex

        from ledger.ops.installation import describe_location

        shown = describe_location(location)
        return f" --db {shlex.quote(location)}" if shown == location else " --db <DSN>"

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
        from ledger.ops.file_digest import (
            META_CONFIG,
            can_record,
            damaged_text,
            in_step,
            read_record,
        )

        inst = self.installation
        if inst.doc is None or in_step(store.ledger, inst.config_file, inst.data):
            return None
        previous, damaged = read_record(store.ledger)  # parsed only past the digest
        if damaged:
            self.out.warn(damaged_text(META_CONFIG, str(inst.config_file)))
        if previous is None:
            return None
        from ledger.ops.hand_edit import pending_hand_edit

        if pending_hand_edit(store.ledger, inst.doc, previous):
            return True
        return False if can_record(store.ledger) else None  # no key: no digest to record

    def keys(self) -> KeySource:
        """Where the ledger key comes from, as the ledger is opened with it (a command
        may check a file against it before opening, and so creating, the ledger)."""
        from ledger.engine.vault import KeySource  # only commands that open a ledger

        return KeySource(key_file=dirs.default_key_file(self.config_home), env=os.environ)

    def _open(self, name: str, location: str, *, read_only: bool) -> LedgerConfigStore:
        from ledger.ops.open_store import open_ledger

        return open_ledger(location, read_only=read_only, busy_timeout=self.busy_timeout,
                           keys=self.keys())

    def close(self) -> None:
        if self._store is not None:
            self._store.ledger.close()
            self._store = None

    def seq(self, ref: str | None, *, lower_bound: bool = False) -> int:
        """A REF (seq, -N, head, a time) as a seq; None is the head. `lower_bound`: the
        REF starts a range (`diff`'s first): a time to the second starts that second,
        and a time before the first event is the empty state (the changes since then
        are all of them; only a state to go to or read must be named 0)."""
        store = self.store()
        if ref is None:
            return store.ledger.head_state().seq
        from ledger.engine.queries import resolve_ref

        return resolve_ref(store.ledger, ref, strict=not lower_bound, lower_bound=lower_bound)

    def write_kw(self, expected_seq: int | None = None) -> dict[str, Any]:
        return {"actor": self.actor, "reason": self.reason, "source": "cli",
                "expected_seq": expected_seq}


def error_kind(err: BaseException) -> str:
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


def error_hint(err: BaseException) -> str | None:
    from ledger.errors import ConfigValidationError, InvalidPathError

    if isinstance(err, StoreBusyError):
        return "another process is writing: retry, or wait longer with --busy-timeout SECONDS"
    if isinstance(err, ConflictError):
        return "the ledger moved on: read it again (`moltis-ledger log --limit 1`) and retry"
    if isinstance(err, InvalidPathError):
        return ("a PATH is dotted TOML keys (tools.exec.sandbox.mode), quoted where needed "
                "(models.\"gpt-5.5\".context_window); keys:NAME.field names provider_keys.json")
    if isinstance(err, ConfigValidationError):
        return ("see `moltis-ledger check` for every problem; `moltis-ledger get --effective "
                "PATH` shows the value in force, of the type the key takes")
    return None


class Reporter:
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


def run_async(coro: Any) -> Any:
    import asyncio  # only the commands that call the async API pay for asyncio

    return asyncio.run(coro)


def doc_path(text: str, *, allow_root: bool = False
             ) -> tuple[Literal["config", "keys"], tuple[str, ...]]:
    """`keys:openai.apiKey` names provider_keys.json; anything else moltis.toml (the one
    path grammar, `ledger.core.keypaths.parse_doc_path`)."""
    from ledger.core.keypaths import parse_doc_path

    return parse_doc_path(text, allow_root=allow_root)




def report_failure(failure: BaseException, report: Reporter, *, json_errors: bool,
                   verbosity: int) -> int:
    """A command's failure (anything but click's own usage errors) reported once; its
    exit code. `json_errors`: --json was given (the report may not know it yet)."""
    if isinstance(failure, CommandError):
        report.json_mode = report.json_mode or json_errors
        return report(str(failure), failure.code, kind=failure.kind, hint=failure.hint)
    if isinstance(failure, LedgerError):
        report.json_mode = report.json_mode or json_errors
        message = str(failure)
        if isinstance(failure, VerificationError) and failure.seq is not None and (
                f"seq {failure.seq}" not in message):
            message += f" (first bad seq {failure.seq})"
        return report(message, exit_code_for(failure), kind=error_kind(failure),
                      hint=error_hint(failure))
    if isinstance(failure, BrokenPipeError | ReaderGone):
        with contextlib.suppress(OSError, ValueError):  # the reader went away: be quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SIGPIPE
    if isinstance(failure, KeyboardInterrupt):
        return 130
    if isinstance(failure, OSError):
        report.json_mode = report.json_mode or json_errors
        return report(str(failure), EXIT_ERROR, kind="os-error")
    if verbosity > 0:
        import traceback  # only with -v

        traceback.print_exception(failure, file=sys.stderr)
    report.json_mode = report.json_mode or json_errors
    return report(f"unexpected {type(failure).__name__}: {failure}", EXIT_ERROR,
                  kind="internal-error",
                  hint=None if verbosity > 0 else "rerun with -v for the traceback")
