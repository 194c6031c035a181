"""Logging for library code: structlog routed through the standard library.

The library never configures logging (that is the host application's job, or the
CLI's). Events go to stdlib loggers under "ledger" with their key/values in `extra`,
and a NullHandler keeps them silent until someone configures logging; nothing is ever
written to stdout, which would corrupt `--json` output.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["get_logger"]

logging.getLogger("ledger").addHandler(logging.NullHandler())


class LibraryLogger:
    """A small structlog-style logger that costs one level check when disabled."""

    __slots__ = ("_logger", "_structured")

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)
        self._structured: Any = None  # built on the first line emitted: importing
        # structlog costs tens of milliseconds, paid by every CLI start otherwise

    def enabled(self, level: int = logging.INFO) -> bool:
        """Check before computing expensive fields for a line nobody will read."""
        return self._logger.isEnabledFor(level)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            if self._structured is None:
                import structlog

                self._structured = structlog.wrap_logger(
                    self._logger,
                    processors=[structlog.stdlib.render_to_log_kwargs],
                    wrapper_class=structlog.stdlib.BoundLogger,
                )
            self._structured.log(level, event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)


def get_logger(name: str) -> LibraryLogger:
    return LibraryLogger(name)
