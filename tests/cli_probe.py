"""Run the CLI in a fresh interpreter and report its exit code, output and every module
it loaded: what a command imports is what its start costs (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# through the console script's entry point (the fast `get` path included)
THROUGH_MAIN = """
import json, sys
import ledger.cli
try:
    ledger.cli.main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

# through click's command table only
THROUGH_RUN = """
import json, sys
import ledger.cli
from ledger.cli.app import run
code = run(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def probe_env() -> dict[str, str]:
    # the gateway reads this ledger (else `get` warns that it does not)
    return dict(os.environ, MOLTIS_CONFIG_BACKEND="sqlite")


def probe(*args: str, script: str = THROUGH_MAIN) -> tuple[int, set[str], str]:
    """(exit code, modules loaded, what the command printed)."""
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, check=False, timeout=120, env=probe_env())
    *output, last = proc.stdout.strip().splitlines()
    doc = json.loads(last)
    return doc["code"], set(doc["modules"]), "\n".join(output)
