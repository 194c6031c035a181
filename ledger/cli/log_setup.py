"""The CLI's logging set-up: stdlib logging to stderr, rendered by structlog's
ConsoleRenderer, each distinct warning once per run. Only the CLI configures logging
(the library never does); `ledger.cli.render.configure_logging` loads this module, so
a command that logs nothing does not import logging (issue 16).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

from ledger.core.escape import escape

__all__ = ["configure_logging"]


class _ConsoleFormatter(logging.Formatter):
    """structlog's ConsoleRenderer (through its stdlib ProcessorFormatter), built on
    the first record: importing structlog costs tens of milliseconds, and most
    commands log nothing at the default WARNING level."""

    def __init__(self) -> None:
        super().__init__()
        self._inner: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._inner is None:
            import structlog

            self._inner = structlog.stdlib.ProcessorFormatter(
                processor=structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
                foreign_pre_chain=[
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    structlog.stdlib.ExtraAdder(),
                    structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=True),
                    _escape_values,
                ],
            )
        return self._inner.format(record)


class _OncePerRun(logging.Filter):
    """Drops a WARNING (or worse) identical to one already shown by this run.

    Why lines printed twice: one command can compute the same thing more than once
    (`get --effective` builds the effective config, then its provenance, and each run
    of `effective_config` logs every ignored MOLTIS_* override). The library rightly
    logs each computation (a gateway reloading wants to know again); the person at the
    terminal needs each distinct problem once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        extra = sorted((k, repr(v)) for k, v in vars(record).items()
                       if k not in _STANDARD_RECORD_FIELDS)
        key = (record.name, record.getMessage(), repr(extra))
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


_STANDARD_RECORD_FIELDS = frozenset(vars(logging.LogRecord(
    "x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime"}


def _escape_values(_logger: Any, _method: str, event: MutableMapping[str, Any]
                   ) -> dict[str, Any]:
    """Log values (a path, an actor, an error naming a bad input) are shown to a person
    too: escape them like every other output."""
    return {k: escape(v) if isinstance(v, str) else
            [escape(x) if isinstance(x, str) else x for x in v] if isinstance(v, list) else v
            for k, v in event.items()}


def configure_logging(verbosity: int) -> None:
    """stdlib logging to stderr, rendered by structlog's ConsoleRenderer: WARNING by
    default, INFO with -v, DEBUG with -vv. The library's key/values arrive in `extra`
    (ledger._log), so no structlog configuration is needed; the library itself never
    configures logging."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else (
        logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ConsoleFormatter())
    handler.addFilter(_OncePerRun())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "moltis_ledger_cli", False)]:
        root.removeHandler(old)  # this CLI's own handler from an earlier run (demo)
    handler.moltis_ledger_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
