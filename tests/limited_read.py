"""Reading a config file in a process of its own whose address space is capped: what a
file of YAML aliases costs is measured as whether it can be read within a limit, not by
timing (reviews r21, r22)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_within(path: Path, limit_mib: int) -> subprocess.CompletedProcess[str]:
    """`read_config_file(path)` under RLIMIT_AS = `limit_mib`; prints "read" when the
    file was read or refused as a ParseError (its node budget), fails otherwise."""
    code = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit_mib} << 20, {limit_mib} << 20))\n"
        "from pathlib import Path\n"
        "from ledger.errors import ParseError\n"
        "from ledger.stores.config_file import read_config_file\n"
        "try:\n"
        f"    read_config_file(Path({str(path)!r}))\n"
        "except ParseError:\n"
        "    pass\n"
        "print('read')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
