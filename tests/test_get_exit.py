"""`moltis-ledger get PATH` run as its own process ends without the interpreter's final
full garbage collection over every object its modules hold (issue 16, figure i16a: that
pass was about a tenth of the command's run), and runs without the cyclic collector
while it imports and works. A host that calls `ledger.cli.main(argv)` in-process keeps
its collector exactly as it was. Checked by the collector's state, never by time.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ledger.cli
from tests.cli_probe import probe_env

# the console script's way in (`moltis-ledger` calls main() with no argv), with an exit
# hook registered first, so it runs last and sees what the command left for the end
AS_THE_PROCESS = """
import atexit, gc, json, sys
atexit.register(lambda: sys.stderr.write(json.dumps(
    {"frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}) + "\\n"))
import ledger.cli
ledger.cli.main()
"""


def _run_as_the_process(*args: str) -> tuple[int, str, dict[str, object]]:
    proc = subprocess.run([sys.executable, "-c", AS_THE_PROCESS, *args],
                          capture_output=True, text=True, check=False, timeout=120,
                          env=probe_env())
    *_, last = proc.stderr.strip().splitlines()
    return proc.returncode, proc.stdout, json.loads(last)


def test_get_as_the_process_skips_the_final_collection(docs_site: Path) -> None:
    code, out, at_exit = _run_as_the_process("get", "server.port")
    assert (code, out) == (0, "13131\n")
    # everything alive at the end is frozen: the exit's full collection passes it by
    frozen = at_exit["frozen"]
    assert isinstance(frozen, int) and frozen > 1000, at_exit
    assert at_exit["enabled"] is True  # the collector is back on for the rest


def test_a_failing_get_as_the_process_ends_the_same_way(docs_site: Path) -> None:
    code, out, at_exit = _run_as_the_process("get", "server.nothing")
    assert (code, out) == (1, "")
    frozen = at_exit["frozen"]
    assert isinstance(frozen, int) and frozen > 1000, at_exit


def test_other_commands_keep_the_interpreter_s_ordinary_exit(docs_site: Path) -> None:
    code, out, at_exit = _run_as_the_process("--version")
    assert code == 0 and "version" in out
    assert at_exit == {"frozen": 0, "enabled": True}


def test_get_in_process_leaves_the_host_s_collector_as_it_was(
        docs_site: Path, capfd: pytest.CaptureFixture[str]) -> None:
    frozen_before = gc.get_freeze_count()
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            with pytest.raises(SystemExit) as stop:
                ledger.cli.main(["get", "server.port"])
            assert stop.value.code == 0
            assert gc.isenabled() is enabled
            assert gc.get_freeze_count() == frozen_before
        finally:
            gc.enable()
    assert capfd.readouterr().out == "13131\n13131\n"
