"""Promise 2: concurrent writers lose nothing.

Four processes on one ledger, started together, each mixing `update_raw` increments of
one shared counter, read-modify-save of a key of its own through `save_raw` with
`expected_seq` (the mapping and the typed form; on ConflictError it reads again and
retries), provider key writes, and a scratch write rolled back by `rollback` (both
guarded by `expected_seq`). At the end: the chain verifies; the head state equals a
serial replay of the log; the counter equals the successful increments; every writer's
own key equals its own successful saves (a save that silently overwrote another
writer's newer document would lose those); every provider entry holds its writer's
last key; every scratch key is exactly what its rollbacks left. On SQLite, and on
PostgreSQL when LEDGER_TEST_PG_URL is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import SqliteConfigStore
from ledger.engine.vault import KeySource
from ledger.stores.ledger_store import LedgerConfigStore
from projections.config_view import EMPTY_STATE, replay
from tests.conftest import PG_URL_VAR, _pg_url, run
from tests.torture import stats
from tests.torture.helpers import ROOT

pytestmark = pytest.mark.torture

WRITERS = int(os.environ.get("LEDGER_TORTURE_WRITERS", "4"))
OPS = int(os.environ.get("LEDGER_TORTURE_WRITER_OPS", "120"))


def race(kind: str, target: str, env: dict[str, str]) -> list[dict]:
    start_at = time.time() + 2.0  # every writer started: then they all write at once
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.workers", "mixed", kind, target,
                          f"w{n}", str(OPS), str(stats.SEED * 10 + n), str(start_at)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for n in range(WRITERS)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"a writer failed:\n{err[-3000:]}"
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def check(store: LedgerConfigStore, reports: list[dict], start_counter: int) -> None:
    ledger = store.ledger
    report = ledger.verify()
    assert report.ok, report.problem
    head = ledger.head_state()
    serial = replay(EMPTY_STATE, ledger.backend.read())
    assert (serial.seq, serial.hash) == (head.seq, head.hash) == (report.head_seq,
                                                                   report.head_hash)
    assert serial.config == head.config and serial.keys == head.keys
    config = run(store.load_raw())
    increments = sum(r["increments"] for r in reports)
    assert config.tools.agent_timeout_secs == start_counter + increments, (
        "lost increments", config.tools.agent_timeout_secs, start_counter, increments)
    telegram = head.config.get("channels", {}).get("telegram", {})
    keys = run(store.providers.list())
    for r in reports:
        actor = r["actor"]
        own = telegram.get(actor, {}).get("n", 0)
        assert own == r["saves"], f"{actor}: its key is {own} after {r['saves']} saves"
        assert telegram.get(f"scratch-{actor}") == r["scratch"], actor
        if r["last_key"] is not None:
            entry = keys[f"custom-{actor}"]
            assert entry.api_key is not None and entry.api_key.reveal() == r["last_key"]
    ops = sum(r["increments"] + r["saves"] + r["providers"] + r["rollbacks"] for r in reports)
    conflicts = sum(r["conflicts"] + r["rollback_conflicts"] for r in reports)
    print(f"{ops} writes, {conflicts} conflicts, head seq {head.seq}")
    stats.add("concurrent_ops", ops)
    stats.add("conflicts", conflicts)
    stats.add("writers", len(reports))
    # the races really happened: some read-modify-save lost a race and was told so
    assert conflicts > 0 or WRITERS * OPS < 100


def test_sqlite_writers_race_without_loss(tmp_path: Path) -> None:
    db = tmp_path / "moltis.db"
    key = os.urandom(32)
    store = SqliteConfigStore(db, keys=KeySource(key=key))
    run(store.update_raw(lambda c: setattr(c.tools, "agent_timeout_secs", 1000)))
    env = {**os.environ, "MOLTIS_LEDGER_KEY": key.hex()}
    reports = race("sqlite", str(db), env)
    check(SqliteConfigStore(db, keys=KeySource(key=key)), reports, 1000)


@pytest.mark.postgres
def test_postgres_writers_race_without_loss() -> None:
    url = _pg_url()
    if not url:
        pytest.skip(f"set {PG_URL_VAR}=postgresql://... to race writers on PostgreSQL "
                    "(.ci/run starts a throwaway server and sets it)")
    from tests.pg import fresh_pg_store

    key = os.urandom(32)
    store = fresh_pg_store(url, keys=KeySource(key=key))
    run(store.update_raw(lambda c: setattr(c.tools, "agent_timeout_secs", 1000)))
    env = {**os.environ, "MOLTIS_LEDGER_KEY": key.hex(), "LEDGER_TEST_PG_SCHEMA": store.pg.schema}
    reports = race("postgres", url, env)
    store.ledger.reset_caches()
    check(store, reports, 1000)
