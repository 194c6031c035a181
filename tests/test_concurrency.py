"""Real OS processes racing on one ledger file: no lost update, no gap, a valid chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ledger import SqliteConfigStore
from tests.conftest import run

ROOT = Path(__file__).resolve().parents[1]


def spawn_increments(kind: str, target: str, processes: int, each: int) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.workers", "increment", kind, target,
                          str(each)], cwd=ROOT)
        for _ in range(processes)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0


def test_four_processes_increment_one_key_through_update_raw(tmp_path):
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    run(store.update_raw(lambda c: setattr(c.tools, "agent_timeout_secs", 0)))
    spawn_increments("sqlite", str(db), processes=4, each=100)
    fresh = SqliteConfigStore(db)
    assert run(fresh.load_raw()).tools.agent_timeout_secs == 400
    report = fresh.ledger.verify()
    assert report.ok
    assert report.events == report.head_seq == 401  # gap-free: seq 1..401, one per write
    seqs = [r.seq for r in fresh.ledger.backend.read()]
    assert seqs == list(range(1, 402))
