"""Promise 1: no acknowledged write is lost on a crash.

A writer process appends through `update_raw` (provider key sets, config secrets and
larger multi-path changes mixed in, a snapshot every 3 events) and reports each
acknowledged seq, with what it holds, on its stdout pipe after the call returned. The
parent kills it with SIGKILL: at a random time, after a random number of
acknowledgements, or aimed at a phase of the append that the worker marks in a phase
file (idle, in fn, BEGIN, INSERT, snapshot INSERT, between INSERT and COMMIT, COMMIT
with its fsync, acknowledged but not reported). After each kill: the database opens,
verify passes, every acknowledged seq is there with its content, every row decodes, the
state replayed from genesis equals what the store serves (snapshots included), and
writing continues.

The same for a FileConfigStore writer killed mid-write (its temp file written in small
chunks, so kills land inside it): the file always parses and is the last acknowledged
version or the one being written, never a mix, and temp files do not accumulate.
"""

from __future__ import annotations

import json
import os
import random
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger import SqliteConfigStore
from ledger.core.events import decode_event
from ledger.engine.vault import KeySource
from ledger.stores.file_store import FileConfigStore
from projections.config_view import EMPTY_STATE, ConfigState, replay
from projections.snapshots import decode_state
from tests.conftest import run
from tests.torture import stats
from tests.torture.helpers import Worker, pool_map

pytestmark = pytest.mark.torture

SQLITE_TRIALS = int(os.environ.get("LEDGER_TORTURE_CRASHES", "60"))
FILE_TRIALS = int(os.environ.get("LEDGER_TORTURE_FILE_CRASHES", "30"))
PHASES = {"0": "idle", "F": "in fn", "G": "BEGIN", "I": "INSERT", "N": "snapshot INSERT",
          "B": "between INSERT and COMMIT", "C": "COMMIT/fsync", "A": "acknowledged",
          "W": "writing the temp file", "S": "fsync of the temp file", "R": "rename",
          "D": "fsync of the folder"}
SQLITE_TARGETS = ["F", "B", "C", "0", "G", "N", "I", "A"]
FILE_TARGETS = ["W", "S", "R", "D", "F", "0"]


def _phase(path: Path) -> str:
    """The phase code, plus "s" when the transaction killed was writing a snapshot."""
    try:
        text = path.read_text()
    except OSError:
        return "?"
    code = text[:1] or "?"
    return code + "s" if code in "NBC" and text[1:2] == "s" else code


def _kill_somewhere(worker: Worker, phase_file: Path, trial: int, targets: list[str],
                    rng: random.Random) -> str:
    """Kill the worker at a random time, after a random number of acks, or as soon as it
    reaches the phase aimed at; returns the phase it was killed in."""
    assert worker.ready.wait(60), "the worker never became ready"
    mode = trial % 3
    if mode == 0:
        time.sleep(rng.uniform(0, 0.4))
    elif mode == 1:
        wanted, deadline = rng.randint(0, 6), time.monotonic() + 10
        while len(worker.lines) < wanted and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.02))
    else:
        target = targets[(trial // 3) % len(targets)]
        fd = os.open(phase_file, os.O_RDONLY)
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                if os.pread(fd, 1, 0) == target.encode():
                    break
        finally:
            os.close(fd)
    worker.kill()
    return _phase(phase_file)  # where it was when it died


@dataclass
class Lane:
    """One ledger killed again and again, and what its writers acknowledged."""

    db: Path
    key: bytes
    acked: dict[int, list] = field(default_factory=dict)
    state: ConfigState = EMPTY_STATE  # the log replayed so far, checked after each kill
    phases: Counter[str] = field(default_factory=Counter)


def check_after_crash(lane: Lane, trial: int) -> None:
    store = SqliteConfigStore(lane.db, keys=KeySource(key=lane.key))
    ledger = store.ledger
    try:
        report = ledger.verify()
        assert report.ok, f"trial {trial}: verify failed: {report.problem}"
        head = report.head_seq
        missing = [s for s in lane.acked if s > head]
        assert not missing, f"trial {trial}: acknowledged seqs lost: {missing}"
        # the log below what was checked before is unchanged, and every new row decodes
        old = ledger.backend.record(lane.state.seq) if lane.state.seq else None
        assert old is None or old.hash == lane.state.hash, f"trial {trial}: history changed"
        snaps = set(ledger.backend.snapshot_seqs())
        state = lane.state
        for rec in ledger.backend.read(after=state.seq):
            event = decode_event(rec)
            assert event.kind in ("change", "shred"), f"trial {trial}: seq {rec.seq}"
            if rec.seq in lane.acked:
                stats.add("acked_checked")
            for doc, path, how, value in lane.acked.get(rec.seq, []):
                found = [c for c in event.changes if c.doc == doc and list(c.path) == path]
                assert found, f"trial {trial}: seq {rec.seq} lacks {doc}:{path}"
                change = found[0]
                if how == "secret":
                    assert change.secret is not None
                    assert ledger.vault.open_secret(change.secret) == value, (trial, rec.seq)
                else:
                    assert change.value == value, (trial, rec.seq, path)
            state = replay(state, [rec])
            if rec.seq in snaps:
                snap = ledger.backend.snapshot_at(rec.seq)
                assert snap is not None and snap.seq == rec.seq
                decoded = decode_state(snap.state)
                assert (decoded.hash, decoded.config, decoded.keys) == (
                    state.hash, state.config, state.keys), f"trial {trial}: snapshot {rec.seq}"
        assert state.seq == head
        served = ledger.head_state()
        assert (served.seq, served.hash, served.config, served.keys) == (
            state.seq, state.hash, state.config, state.keys), f"trial {trial}: projection"
        lane.state = state
        # writing continues
        commit = ledger.edit({("torture", "after_crash"): trial}, actor="parent",
                             reason="after a crash")
        assert commit.appended and commit.seq == head + 1
        assert ledger.verify().ok
    finally:
        ledger.close()


def run_sqlite_lane(lane: Lane, trials: range, seed: int) -> None:
    rng = random.Random(seed)
    env = {**os.environ, "MOLTIS_LEDGER_KEY": lane.key.hex()}
    phase_file = lane.db.with_name("phase")
    for trial in trials:
        phase_file.write_text("-")
        worker = Worker(["crash-append", "sqlite", str(lane.db), str(phase_file),
                         str(seed * 1000 + trial)], env, lane.db.with_name("worker.log"))
        phase = _kill_somewhere(worker, phase_file, trial, SQLITE_TARGETS, rng)
        lane.phases[phase[0]] += 1
        stats.add(f"phase:{PHASES.get(phase[0], phase[0])}")
        if phase.endswith("s"):
            lane.phases["snapshot"] += 1
            stats.add("killed_in_snapshot_txn")
        for line in worker.lines:
            ack = json.loads(line)
            lane.acked[ack["seq"]] = ack["expect"]
        check_after_crash(lane, trial)
        stats.add("crash_sqlite")


def test_killed_sqlite_writers_lose_no_acknowledged_write(tmp_path: Path) -> None:
    lanes = []
    for n in range(2):
        folder = tmp_path / f"lane{n}"
        folder.mkdir()
        lanes.append(Lane(folder / "moltis.db", os.urandom(32)))
    half = SQLITE_TRIALS // 2
    seed = stats.SEED
    pool_map(lambda n: run_sqlite_lane(lanes[n], range(n * half, (n + 1) * half), seed + n),
             range(2))
    phases = sum((lane.phases for lane in lanes), Counter())
    acked = sum(len(lane.acked) for lane in lanes)
    print("kills by phase:", {PHASES.get(k, k): v for k, v in phases.most_common()},
          f"acknowledged: {acked}")
    assert acked > 0
    if SQLITE_TRIALS >= 50:
        # kills landed all over the append, snapshot-writing transactions included
        for code in ("0", "F", "B", "C", "snapshot"):
            assert phases[code] > 0, f"no kill landed {PHASES.get(code, code)}: {phases}"
        assert len(phases) >= 6, phases


# -- the file store ------------------------------------------------------------------

HEADER = "# moltis.toml: a torture test's configuration (comments must survive)\n"
SENTINEL = "# sentinel: the end of the file\n"


def seed_file(path: Path) -> None:
    filler = "".join(f"# filler comment line {i}: the file must never be half written\n"
                     for i in range(400))
    path.write_text(HEADER + filler + '[identity]\nname = "v0"\n\n[server]\nport = 1000\n\n'
                    "[tools]\nagent_timeout_secs = 1\n\n" + SENTINEL)


def check_file_after_crash(path: Path, last: int, trial: int) -> int:
    data = path.read_bytes()
    doc = tomllib.loads(data.decode("utf-8"))  # it always parses
    n = int(doc["identity"]["name"][1:])
    assert n in (last, last + 1), f"trial {trial}: version {n} after acknowledged {last}"
    assert doc["server"]["port"] == 1000 + n and doc["tools"]["agent_timeout_secs"] == n + 1, (
        f"trial {trial}: a mix of versions: {doc}")
    text = data.decode()
    assert text.startswith(HEADER) and text.endswith(SENTINEL), f"trial {trial}: comments"
    assert run(FileConfigStore(path).raw_document())["identity"]["name"] == f"v{n}"
    temps = sorted(p.name for p in path.parent.glob(f".{path.name}.*.tmp"))
    # the killed writer may leave its temp file; the next write must clear it away
    assert len(temps) <= 1, f"trial {trial}: temp files accumulate: {temps}"
    return n


def run_file_lane(path: Path, trials: range, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    phases: Counter[str] = Counter()
    phase_file = path.with_name("phase")
    last = 0
    for trial in trials:
        phase_file.write_text("-")
        worker = Worker(["crash-file", "file", str(path), str(phase_file),
                         str(seed * 1000 + trial)], dict(os.environ),
                        path.with_name("worker.log"))
        phases[_kill_somewhere(worker, phase_file, trial, FILE_TARGETS, rng)] += 1
        if worker.lines:
            last = json.loads(worker.lines[-1])["version"]
        last = check_file_after_crash(path, last, trial)
        stats.add("crash_file")
    # writing continues, and no temp file is left once a writer got the lock again
    run(FileConfigStore(path).update_raw(lambda c: setattr(c.identity, "name", "final")))
    assert not list(path.parent.glob(f".{path.name}.*.tmp"))
    return phases


def test_killed_file_writers_leave_old_or_new_file_never_half(tmp_path: Path) -> None:
    paths = []
    for n in range(2):
        folder = tmp_path / f"conf{n}"
        folder.mkdir()
        paths.append(folder / "moltis.toml")
        seed_file(paths[-1])
    half = FILE_TRIALS // 2
    seed = stats.SEED
    results = pool_map(lambda n: run_file_lane(paths[n], range(n * half, (n + 1) * half),
                                               seed + 10 + n), range(2))
    phases = sum(results, Counter())
    print("file kills by phase:", {PHASES.get(k, k): v for k, v in phases.most_common()})
    if FILE_TRIALS >= 30:
        assert phases["W"] > 0 and len(phases) >= 4, phases
