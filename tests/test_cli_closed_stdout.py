"""The CLI when nobody reads its output, in real processes (the file descriptors are
the point): a reader that went away (`moltis-ledger log | head -1`) ends it quietly with
the status git and coreutils give (killed by SIGPIPE: 128 + 13 = 141 in the shell), and
a closed stdout (`moltis-ledger get server.port >&-`) is a one-line write error with
exit 1, as coreutils reports it; never a traceback or an "unexpected" error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run as arun

EXIT_SIGPIPE = 128 + signal.SIGPIPE


@pytest.fixture
def ledger_with_history(tmp_path: Path) -> None:
    """A ledger with a few hundred events (more than a pipe buffer of `log` output)."""
    from ledger.core.events import Change
    from ledger.ops.open_store import open_ledger

    store = open_ledger(str(tmp_path / "data" / "moltis.db"))
    try:
        for i in range(300):
            store.ledger.apply(
                lambda state, sealer, i=i: [Change(op="set", path=("server", "port"),
                                                   value=2000 + i)],
                actor="tester@ci", source="cli", reason=f"step {i}")
    finally:
        arun(store.close())


def _with_gone_reader(*args: str) -> subprocess.CompletedProcess[bytes]:
    """`moltis-ledger ARGS` writing into a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "ledger", *args], stdout=write_end,
                              stderr=subprocess.PIPE, check=False)
    finally:
        os.close(write_end)


def _clean(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text and "unexpected" not in text and "Exception" not in text
    return text


@pytest.mark.usefixtures("ledger_with_history")
def test_a_reader_that_went_away_ends_the_cli_quietly_like_git() -> None:
    for args in (("log", "--limit", "0"), ("--json", "log", "--limit", "0")):
        proc = _with_gone_reader(*args)
        assert proc.returncode == EXIT_SIGPIPE, (args, proc.stderr)
        assert "error" not in _clean(proc.stderr), args


@pytest.mark.usefixtures("ledger_with_history")
def test_a_closed_stdout_is_a_write_error_not_a_traceback() -> None:
    proc = subprocess.run(["sh", "-c", 'exec "$0" -m ledger get server.port >&-',
                           sys.executable], stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 1, proc.stderr
    err = _clean(proc.stderr)
    assert "write error" in err and "stdout" in err
