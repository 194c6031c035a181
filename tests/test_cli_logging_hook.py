"""The CLI's queued logging set-up (ledger._log.when_logging_loads) never outlives the
command that queued it: a host running `get` in-process keeps its own later logging.

Real processes: only a process that has not imported `logging` takes the lazy path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.migrated_site import SECRET, site_env

# A host that has not imported logging runs the CLI's `get` in-process, then sets up
# its own logging at DEBUG, then uses the library: the CLI's set-up must not run on the
# library's first line (it would reset the root to WARNING and add its stderr handler).
HOST_AFTER_CLI_GET = """
import json, sys
import ledger.cli
try:
    ledger.cli.main(["get", "server.port"])
except SystemExit:
    pass
import ledger._log
pending = len(ledger._log._on_load)
import logging
got = []
class Capture(logging.Handler):
    def emit(self, record):
        got.append([record.name, record.levelname, record.getMessage()])
root = logging.getLogger()
root.addHandler(Capture())
root.setLevel(logging.DEBUG)
from ledger.core.keypaths import parse_path
from ledger.ops.open_store import open_store
store = open_store()
store.ledger.edit({parse_path("server.port"): 2000}, actor="host")
logging.getLogger("host").info("host line after the ledger's first line")
print(json.dumps({"got": got, "pending": pending, "level": root.level,
                  "handlers": [type(h).__name__ for h in root.handlers]}))
"""


def test_cli_get_in_process_does_not_reset_the_hosts_later_logging_config(
        tmp_path: Path) -> None:
    env = site_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", HOST_AFTER_CLI_GET], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    got = [tuple(r) for r in out["got"]]
    assert out["pending"] == 0  # `get` returned: nothing of it is left queued
    assert ("ledger.engine.ledger", "INFO", "appended") in got, got
    assert ("host", "INFO", "host line after the ledger's first line") in got, got
    assert out["level"] == 10 and out["handlers"] == ["Capture"], out
    assert SECRET not in proc.stdout + proc.stderr
