"""A script that forks and writes in the child, run in a fresh interpreter (the tests
of a store used across os.fork: tests/test_writer_fork.py, tests/test_write_queue_helper.py).

`run_forked(setup, child, *args)`: `setup` runs in the parent (it opens and uses the
store), then the process forks; `child` runs in the child, whose exit code the parent
prints. The subprocess's timeout is a safety net against a hung child, never a timing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_FORK = """
import os
pid = os.fork()
if pid == 0:
    try:
{child}
    except BaseException as err:
        print("child failed:", type(err).__name__, err, flush=True)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
"""


def run_forked(setup: str, child: str, *args: str, timeout: float = 120) -> None:
    """Run `setup`, fork, run `child` in the child; assert the child exited 0."""
    script = textwrap.dedent(setup) + _FORK.format(
        child=textwrap.indent(textwrap.dedent(child), " " * 8))
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert "child exit 0" in proc.stdout, proc.stdout + proc.stderr[-3000:]
