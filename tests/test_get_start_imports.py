"""`moltis-ledger get PATH` starts without the standard library's heavy modules it does
not need (issue 16, figure i16a): no `logging` (the library's logger loads it on the
first line that could be emitted), no `typing_extensions` (msgspec falls back to
`typing`), no `inspect` (pulled by both). Checked by `sys.modules` in a fresh
interpreter, never by time; and what is printed when the library does log a warning
on that path is byte for byte what the click command prints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import apsw

from tests.cli_probe import probe, probe_env

# the same command line through the click command, in a fresh interpreter
BY_CLICK = """
import sys
from ledger.cli.app import run
sys.exit(run(sys.argv[1:]))
"""

BY_MAIN = """
import sys
import ledger.cli
ledger.cli.main(sys.argv[1:])
"""


LIGHT = ("logging", "typing_extensions", "inspect", "dataclasses")


def test_get_loads_neither_logging_nor_typing_extensions_nor_inspect(docs_site: Path) -> None:
    code, modules, output = probe("get", "server.port")
    assert (code, output) == (0, "13131")
    loaded = [m for m in LIGHT if m in modules]
    assert not loaded, f"`get` imported {loaded}"


def test_the_errors_of_get_load_them_only_when_they_need_them(docs_site: Path) -> None:
    # an unknown key loads the schema (suggestions): msgspec must still handle it
    code, _, output = probe("get", "server.prot")
    assert code == 1 and output == ""
    proc = subprocess.run([sys.executable, "-c", BY_MAIN, "get", "server.prot"],
                          capture_output=True, text=True, check=False, timeout=120,
                          env=probe_env())
    assert proc.returncode == 1 and "unknown key" in proc.stderr
    assert "server.port" in proc.stderr  # the nearest known key, from the schema


def _plant_a_bad_snapshot(db: Path) -> None:
    """A snapshot row whose MAC does not check: the library logs a warning and replays
    the log instead (the same answer)."""
    con = apsw.Connection(str(db))
    try:
        seq, hash_ = con.execute("SELECT seq, hash FROM ledger_events ORDER BY seq DESC "
                                 "LIMIT 1").fetchone()
        con.execute("INSERT OR REPLACE INTO ledger_snapshots (seq, hash, state) "
                    "VALUES (?, ?, ?)", (seq, hash_, b"\xffLS1" + b"\x00" * 40))
    finally:
        con.close()


def test_a_library_warning_on_the_fast_path_prints_as_the_click_command_prints_it(
        docs_site: Path) -> None:
    _plant_a_bad_snapshot(Path(os.environ["MOLTIS_DATA_DIR"]) / "moltis.db")
    runs = []
    for script in (BY_MAIN, BY_CLICK):
        proc = subprocess.run([sys.executable, "-c", script, "get", "server.port"],
                              capture_output=True, text=True, check=False, timeout=120,
                              env=probe_env())
        # the lines are the same but for the time they were printed at
        runs.append((proc.returncode, proc.stdout,
                     re.sub(r"^\d\d:\d\d:\d\d ", "", proc.stderr, flags=re.M)))
    assert runs[0] == runs[1]
    code, out, err = runs[0]
    assert (code, out) == (0, "13131\n")
    assert "ignoring a snapshot whose MAC does not check" in err


LIBRARY = """
import json, sys
from ledger._log import get_logger, when_logging_loads
log = get_logger("ledger.probe")
ran = []
when_logging_loads(lambda: ran.append("logging" in sys.modules))
log.debug("a debug line", n=1)
log.info("an info line", n=2)
quiet = "logging" in sys.modules
log.warning("a warning line", n=3)
import logging
print(json.dumps({"quiet": quiet, "ran": ran,
                  "null": [type(h).__name__ for h in logging.getLogger("ledger").handlers]}))
"""


def test_the_library_logger_loads_logging_only_for_a_line_that_could_be_shown() -> None:
    """Below WARNING nothing can be shown while logging is not loaded (the root's
    default level): such lines load nothing. A warning loads it, sets the library's
    NullHandler up, and runs the host's set-up first."""
    proc = subprocess.run([sys.executable, "-c", LIBRARY], capture_output=True, text=True,
                          check=True, timeout=120)
    assert json.loads(proc.stdout) == {"quiet": False, "ran": [True],
                                       "null": ["NullHandler"]}
    assert proc.stderr == ""  # the NullHandler keeps an unconfigured host quiet


HOST = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(levelname)s %(message)s")
from ledger._log import get_logger
get_logger("ledger.probe").info("an info line")
"""


def test_a_host_that_configured_logging_sees_the_library_s_info_lines() -> None:
    proc = subprocess.run([sys.executable, "-c", HOST], capture_output=True, text=True,
                          check=True, timeout=120)
    assert proc.stdout.startswith("INFO ") and "an info line" in proc.stdout
