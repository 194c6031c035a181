"""`moltis-ledger get PATH` loads nothing only a write uses and compiles no regular
expression it does not match with (issue 16, figure i16a). Checked by `sys.modules` and
by the patterns the library's modules hand to `re.compile`, in a fresh interpreter,
never by time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_probe import probe, probe_env

# only a write uses these: `get` opens the ledger read-only and names no actor
WRITE_ONLY = ("ledger.backends.write_queue", "ledger.engine.group_commit",
              "ledger.core.actor")

# every `re.compile` a module of the ledger runs while `get` runs, by module
COMPILES = """
import json, re, sys
compile_ = re.compile
compiled = []
def recording(pattern, flags=0):
    caller = sys._getframe(1).f_globals.get("__name__", "")
    if caller.split(".")[0] in ("ledger", "projections"):
        compiled.append(caller)
    return compile_(pattern, flags)
re.compile = recording
import ledger.cli
try:
    ledger.cli.main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
sys.stderr.write(json.dumps({"code": code, "compiled": sorted(set(compiled))}) + "\\n")
"""


def test_get_loads_nothing_only_a_write_uses(docs_site: Path) -> None:
    code, modules, output = probe("get", "server.port")
    assert (code, output) == (0, "13131")
    loaded = [m for m in WRITE_ONLY if m in modules]
    assert not loaded, f"`get` imported {loaded}"


def test_a_write_still_loads_them(docs_site: Path) -> None:
    code, modules, _ = probe("set", "server.port", "8080", "--reason", "probe")
    assert code == 0
    assert [m for m in WRITE_ONLY if m in modules] == list(WRITE_ONLY)


@pytest.mark.parametrize(("args", "matching"), [
    (["get", "server.port"], ["ledger.core.keypaths"]),  # PATH is parsed
    # --json output is made terminal-safe (ledger.core.escape.json_safe)
    (["--json", "get", "server.port"], ["ledger.core.escape", "ledger.core.keypaths"])])
def test_get_compiles_only_the_patterns_it_matches_with(docs_site: Path, args: list[str],
                                                        matching: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", COMPILES, *args], capture_output=True,
                          text=True, check=False, timeout=120, env=probe_env())
    doc = json.loads(proc.stderr.strip().splitlines()[-1])
    assert doc["code"] == 0
    assert doc["compiled"] == matching, doc
