"""Rendering for `moltis-ledger`: rich tables and coloured diffs for people, one JSON
document for scripts, progress bars on stderr, and the CLI's logging set-up.

Nothing here computes anything about the ledger: it receives what the library
returned (already redacted by `ledger.ops.history`) and turns it into text. Human output goes
through rich `Text` objects, never markup strings, so a config value such as
`"[bold]"` is printed as it is, and every text passes `ledger.core.escape.escape`, so a
control or bidi character in a value, reason or actor is shown as `\\x1b` / `\\u202e`
instead of reaching the terminal. JSON output keeps its values but writes those
characters as `\\uXXXX` escapes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

from ledger.core.escape import escape, json_safe
from ledger.core.value_text import literal

__all__ = ["Output", "configure_logging", "json_text"]

T = TypeVar("T")
PIPE_WIDTH = 160  # table width when stdout is not a terminal (and COLUMNS is unset)
MAX_CHANGES_SHOWN = 8  # per event in `log`; the rest is summarised ("… 12 more")


def json_text(doc: Any, *, compact: bool = False) -> str:
    """The one JSON document a command prints (default=str only as a safety net for
    TOML date/time values)."""
    if compact:
        return json_safe(json.dumps(doc, ensure_ascii=False, separators=(",", ":"),
                                    default=str))
    return json_safe(json.dumps(doc, ensure_ascii=False, indent=2, default=str))


def when(iso: str | datetime) -> str:
    """An event time for people: UTC, to the second."""
    moment = datetime.fromisoformat(iso) if isinstance(iso, str) else iso
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def change_line(change: Mapping[str, Any]) -> str:
    """One change of `ops.display_change` as `set server.port = 8080`."""
    where = change["path"]
    if change.get("doc", "config") != "config":
        where = f"{change['doc']}:{where}"
    if change["op"] == "unset":
        return f"unset {where}"
    return f"set {where} = {literal(change.get('value'))}"


def _console(**options: Any) -> Console:
    """A rich Console whose broken pipe (the reader went away: `| head -1`) is raised
    as BrokenPipeError, so `report_failure` ends the process as for any other output,
    instead of rich's own `SystemExit(1)`."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more is written to a pipe nobody reads
            raise BrokenPipeError(errno.EPIPE, "the reader of stdout went away")

    return _Console(**options)


class Output:
    """Where a command writes: `out` (stdout: results) and `err` (stderr: notes,
    warnings, progress). In JSON mode stdout receives exactly one document."""

    def __init__(self, *, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        # rich is imported (tens of milliseconds) only when something styled is printed:
        # `get` and every --json command write plain text and never pay for it.
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console(highlight=False, soft_wrap=True)
            if not self._out.is_terminal and not os.environ.get("COLUMNS"):
                # piped or redirected: do not fold tables to 80 columns
                self._out = _console(highlight=False, soft_wrap=True, width=PIPE_WIDTH)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            from rich.console import Console

            self._err = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._err

    # -- plain output ---------------------------------------------------------------

    # Whether this process already printed its one JSON document: a command that reports
    # and then fails (verify: the report, then exit 3) must not print a second one.
    json_printed = False

    def json(self, doc: Any) -> None:
        Output.json_printed = True
        sys.stdout.write(json_text(doc) + "\n")
        sys.stdout.flush()

    def json_line(self, doc: Any) -> None:
        sys.stdout.write(json_text(doc, compact=True) + "\n")
        sys.stdout.flush()

    def text(self, text: str) -> None:
        """Text exactly as given (a TOML file, a value): no styling, no wrapping."""
        text = escape(text, keep_newlines=True)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    def line(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        self.out.print(Text(escape(text), style=style or ""))

    def lines(self, texts: Iterable[tuple[str, str | None]]) -> None:
        for text, style in texts:
            self.line(text, style)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr, so pipes stay clean)."""
        from rich.text import Text

        self.err.print(Text(escape(text, keep_newlines=True), style="dim"))

    def warn(self, text: str) -> None:
        from rich.text import Text

        self.err.print(Text(f"warning: {escape(text, keep_newlines=True)}", style="yellow"))

    def error(self, text: str) -> None:
        from rich.text import Text

        self.err.print(Text(f"error: {escape(text, keep_newlines=True)}", style="bold red"))

    def step(self, command: str) -> None:
        """A demo step: the command line an operator would type."""
        from rich.text import Text

        self.out.print()
        self.out.print(Text(f"$ {escape(command)}", style="bold cyan"))

    # -- progress -------------------------------------------------------------------

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None = None
                 ) -> Iterator[Callable[[int], None]]:
        """A progress bar (or a spinner when `total` is unknown) on stderr, only when
        stderr is a terminal; yields `advance(n)`."""
        if not self.err.is_terminal:
            yield lambda _n: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        with Progress(*columns, console=self.err, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)

    def track(self, items: Iterable[T], description: str, total: int) -> Iterator[T]:
        if not self.err.is_terminal:
            yield from items
            return
        with self.progress(description, total) as advance:
            for item in items:
                yield item
                advance(1)

    # -- tables ---------------------------------------------------------------------

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[str | Text]],
              title: str | None = None, *, no_wrap: Iterable[str] = ("seq", "time"),
              ratios: Mapping[str, int] | None = None) -> None:
        """A table; with `ratios`, it takes the full width and shares what the other
        columns leave among those columns."""
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, title_justify="left", header_style="bold",
                      show_edge=False, pad_edge=False, expand=bool(ratios))
        keep = set(no_wrap)
        for name in columns:
            table.add_column(name, overflow="fold", no_wrap=name in keep,
                             ratio=(ratios or {}).get(name))
        for row in rows:
            table.add_row(*[c if isinstance(c, Text) else Text(escape(c)) for c in row])
        self.out.print(table)

    # -- renderers ------------------------------------------------------------------

    def changes(self, changes: Iterable[Mapping[str, Any]], *, indent: str = "  ") -> None:
        for ch in changes:
            self.line(indent + change_line(ch),
                      "red" if ch["op"] == "unset" else "green")

    def diff(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Path-level changes: green added, red removed, yellow changed."""
        for e in entries:
            where = e["path"] if e["doc"] == "config" else f"{e['doc']}:{e['path']}"
            if e["kind"] == "added":
                self.line(f"+ {where} = {literal(e['new'])}", "green")
            elif e["kind"] == "removed":
                self.line(f"- {where} = {literal(e['old'])}", "red")
            else:
                self.line(f"~ {where}: {literal(e['old'])} -> {literal(e['new'])}", "yellow")

    def events(self, events: Sequence[Mapping[str, Any]], title: str | None = None) -> None:
        from rich.text import Text

        rows = []
        for ev in events:
            shown = [change_line(c) for c in ev["changes"][:MAX_CHANGES_SHOWN]]
            more = len(ev["changes"]) - len(shown)
            if more > 0:
                shown.append(f"… {more} more (log --json shows all)")
            if ev.get("shredded"):
                shown.append(f"shredded {len(ev['shredded'])} secret value(s)")
            if ev.get("rollback_to") is not None:
                shown.insert(0, f"(rollback to seq {ev['rollback_to']})")
            # one escaped line per change (the cell's own line breaks are ours)
            rows.append((str(ev["seq"]), when(ev["time"]), ev["actor"], ev["source"],
                         ev["reason"], Text("\n".join(map(escape, shown)))))
        self.table(("seq", "time", "actor", "source", "reason", "changes"), rows, title,
                   no_wrap=("seq", "time", "actor", "source"),
                   ratios={"reason": 1, "changes": 2})

    def event_line(self, ev: Mapping[str, Any]) -> None:
        """One event on one line (for `watch`)."""
        changes = "; ".join(change_line(c) for c in ev["changes"][:MAX_CHANGES_SHOWN])
        if len(ev["changes"]) > MAX_CHANGES_SHOWN:
            changes += f"; … {len(ev['changes']) - MAX_CHANGES_SHOWN} more"
        if ev.get("shredded"):
            changes = f"shredded {len(ev['shredded'])} secret value(s)"
        reason = f"  ({ev['reason']})" if ev["reason"] else ""
        self.line(f"seq {ev['seq']}  {when(ev['time'])}  {ev['actor']}  {ev['source']}  "
                  f"{changes}{reason}")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------
# logging: only the CLI configures it (the library never does), in ledger.cli.log_setup


def configure_logging(verbosity: int) -> None:
    """stdlib logging to stderr (ledger.cli.log_setup.configure_logging)."""
    from ledger.cli.log_setup import configure_logging as configure  # loads logging

    configure(verbosity)


def configure_logging_when_needed(verbosity: int) -> Callable[[], None]:
    """The same set-up, made only when the library is about to check a line against
    logging (ledger._log.when_logging_loads): a command that logs nothing (`get`)
    starts without importing logging, and one that does prints the same lines.
    Returns the cancel function the command calls when it ends (a host that ran it
    in-process keeps its own later logging configuration)."""
    from ledger._log import when_logging_loads  # the library's hook for its host

    return when_logging_loads(lambda: configure_logging(verbosity))
