"""Logging for library code: structlog routed through the standard library.

The library never configures logging (that is the host application's job, or the
CLI's). Events go to stdlib loggers under "ledger" with their key/values in `extra`,
and a NullHandler keeps them silent until someone configures logging; nothing is ever
written to stdout, which would corrupt `--json` output.

`logging` itself is imported on the first line that could be shown (issue 16: it costs
a CLI start ~10 ms, and `moltis-ledger get` logs nothing). Until someone imports it,
nobody can have configured it: the root logger is at its default level, WARNING, so a
DEBUG or INFO line is dropped exactly as logging would drop it, without importing it.
A WARNING (or worse) imports it and is emitted as before.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import logging

__all__ = ["get_logger", "when_logging_loads"]

# logging's own level numbers (fixed by the standard library)
DEBUG: Final = 10
INFO: Final = 20
WARNING: Final = 30
ERROR: Final = 40

_ready = [False]  # the library's set-up ran (the NullHandler, the host's hooks)
_setting_up = threading.RLock()  # another thread's first line waits for the set-up
_on_load: list[Callable[[], None]] = []


def _logging() -> Any:
    """The logging module, set up for the library on first use: the NullHandler of
    "ledger", then whatever the host asked to run first (`when_logging_loads`)."""
    import logging  # loaded on the first line that could be shown (see the docstring)

    if not _ready[0]:
        with _setting_up:
            _set_up(logging)
    return logging


def _set_up(logging: Any) -> None:
    """Under `_setting_up`: the library's set-up once, then the queued hooks. `_ready`
    is set last, so another thread's first line waits on the lock until the host's
    handlers exist; a hook's own lines (same thread) find the NullHandler in place."""
    if not _set_up_once:
        _set_up_once.append(True)
        logging.getLogger("ledger").addHandler(logging.NullHandler())
    while _on_load:
        _on_load.pop(0)()
    _ready[0] = True


_set_up_once: list[bool] = []  # the NullHandler was added (even if a hook then failed)


def when_logging_loads(setup: Callable[[], None]) -> Callable[[], None]:
    """For the host (the CLI, never the library): run `setup` (its logging
    configuration) just before the library's first line is checked against a loaded
    logging module; at once if logging is loaded already. Until then nothing can be
    shown, so configuring later shows exactly what configuring first would have.

    Returns a cancel function: a host whose command has ended calls it, so a set-up it
    no longer wants never runs later (in a process that goes on using the library with
    a logging configuration of its own)."""
    with _setting_up:
        _on_load.append(setup)
        if _ready[0] or "logging" in sys.modules:
            _set_up(sys.modules["logging"])

    def cancel() -> None:
        with _setting_up:
            if setup in _on_load:
                _on_load.remove(setup)

    return cancel


class LibraryLogger:
    """A small structlog-style logger that costs one level check when disabled."""

    __slots__ = ("_logger", "_name", "_structured")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None  # on first use (see the docstring)
        self._structured: Any = None  # built on the first line emitted: importing
        # structlog costs tens of milliseconds, paid by every CLI start otherwise

    def _stdlib(self) -> logging.Logger | None:
        """The stdlib logger, or None while logging is not loaded (nothing below
        WARNING can be shown then)."""
        if self._logger is None:
            if not _ready[0] and "logging" not in sys.modules:
                return None
            self._logger = _logging().getLogger(self._name)
        return self._logger

    def enabled(self, level: int = INFO) -> bool:
        """Check before computing expensive fields for a line nobody will read."""
        logger = self._stdlib()
        if logger is None:
            if level < WARNING:
                return False  # the unconfigured root's level
            logger = self._logger = _logging().getLogger(self._name)
        return logger.isEnabledFor(level)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self.enabled(level):
            if self._structured is None:
                import structlog  # on the first line emitted (see __init__)

                self._structured = structlog.wrap_logger(
                    self._logger,
                    processors=[structlog.stdlib.render_to_log_kwargs],
                    wrapper_class=structlog.stdlib.BoundLogger,
                )
            self._structured.log(level, event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(ERROR, event, fields)


def get_logger(name: str) -> LibraryLogger:
    return LibraryLogger(name)
