"""The standard streams of a `moltis-ledger` process started with one of them closed
(`moltis-ledger get server.port >&-`).

Each closed descriptor 0-2 gets /dev/null first, as git does: otherwise the next file
this process opens (the ledger database, the key file, a lock) would take that number,
and anything written to "stdout" would land in it. A closed stdout is then reported the
way coreutils reports it: the first write is a write error (exit 1, one line on stderr),
never a traceback; a command that prints nothing is not affected. A closed stderr
writes nowhere. A reader that goes away later (`| head -1`) is a broken pipe instead:
`ledger.cli.base.report_failure` ends the process quietly with status 141.
"""

from __future__ import annotations

import errno
import io
import os
import sys

__all__ = ["guard_closed_streams"]


class _ClosedStdout(io.TextIOBase):
    """sys.stdout when descriptor 1 was closed at start: every write is refused."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "write error: stdout is closed (>&-); nothing was printed")

    def isatty(self) -> bool:
        return False


def guard_closed_streams() -> None:
    """Fill closed descriptors 0-2 with /dev/null and give Python streams for them."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd` itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own stderr
