"""Promise 3: tampering is detected. At least 1,000 random trials on copies of a real
40-event ledger (config changes, provider keys, a shred, a rollback): one byte of any
column of one event changed (text columns may become invalid UTF-8), an event deleted,
two swapped, a forged one inserted (shifting later seqs, or correctly hashed over a
wrong previous link), or the tail cut off (caught with the head recorded before).
`verify` must catch every one and name the first bad seq, computed per kind; a sample
goes through `python -m ledger --db COPY verify` (exit 3, the seq named).

Not a tampering the chain can catch, by design: a forged event appended at the head
with a correct link (anyone can compute an unkeyed hash) and a rewritten chain; an
external record of the head (`--expect-head`) is what catches those.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.backends.sqlite import SqliteBackend
from ledger.core.chain import GENESIS, link
from ledger.core.events import Record
from ledger.errors import LedgerError
from tests.conftest import run
from tests.torture import stats
from tests.torture.helpers import build_real_ledger, pool_map, run_cli, scratch_dir

pytestmark = pytest.mark.torture

TRIALS = int(os.environ.get("LEDGER_TORTURE_TAMPER_TRIALS", "1000"))
CLI_SAMPLE = int(os.environ.get("LEDGER_TORTURE_TAMPER_CLI", "30"))
COLUMNS = ("seq", "ts", "actor", "reason", "source", "kind", "payload", "prev_hash", "hash")
TEXT = ("actor", "reason", "source", "kind")


@dataclass
class Base:
    data: bytes
    records: list[Record]
    head: bytes


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    path = tmp_path_factory.mktemp("tamper") / "moltis.db"
    build_real_ledger(path, os.urandom(32))
    backend = SqliteBackend(path, read_only=True)
    records = list(backend.read())
    backend.close()
    return Base(path.read_bytes(), records, records[-1].hash)


@dataclass
class Tampering:
    kind: str
    what: str
    statements: list[tuple[str, tuple[object, ...]]]
    expected: int  # the first bad seq verify must name
    needs_head: bool = False  # a cut tail: only the recorded head shows it


def _changed_byte(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if not data:  # an empty text column: "change" it by giving it one byte
        b = rng.randrange(256)
        return bytes([b]), f"empty -> {b:#04x}"
    i = rng.randrange(len(data))
    new = rng.choice([b for b in range(256) if b != data[i]])
    return data[:i] + bytes([new]) + data[i + 1:], f"byte {i}: {data[i]:#04x} -> {new:#04x}"


def _int_byte(value: int, rng: random.Random) -> tuple[int, str]:
    raw = value.to_bytes(8, "big", signed=True)
    changed, what = _changed_byte(raw, rng)
    return int.from_bytes(changed, "big", signed=True), what


def byte_change(recs: list[Record], rng: random.Random) -> Tampering:
    n = len(recs)
    rec = recs[rng.randrange(n)]
    col = rng.choice(COLUMNS)
    if col == "seq":
        while True:
            new, what = _int_byte(rec.seq, rng)
            if not 1 <= new <= n:
                break
        # the row leaves its place: its seq is missing (a seq below 1 is never read)
        return Tampering("byte", f"seq {rec.seq} {what} (now {new})",
                         [("UPDATE ledger_events SET seq = ? WHERE seq = ?", (new, rec.seq))],
                         rec.seq)
    if col == "ts":
        new, what = _int_byte(rec.ts, rng)
        sql, arg = "UPDATE ledger_events SET ts = ? WHERE seq = ?", new
    elif col in TEXT:
        changed, what = _changed_byte(getattr(rec, col).encode("utf-8"), rng)
        sql = f"UPDATE ledger_events SET {col} = CAST(? AS TEXT) WHERE seq = ?"
        try:
            changed.decode("utf-8")
        except UnicodeDecodeError:  # verify must report it, not fail decoding it
            return Tampering("byte-invalid-utf8", f"seq {rec.seq} {col} {what}",
                             [(sql, (changed, rec.seq))], rec.seq)
        arg = changed
    else:
        changed, what = _changed_byte(bytes(getattr(rec, col)), rng)
        sql, arg = f"UPDATE ledger_events SET {col} = ? WHERE seq = ?", changed
    return Tampering("byte", f"seq {rec.seq} {col} {what}", [(sql, (arg, rec.seq))], rec.seq)


def delete(recs: list[Record], rng: random.Random) -> Tampering:
    seq = rng.randint(1, len(recs))
    return Tampering("delete", f"delete seq {seq}",
                     [("DELETE FROM ledger_events WHERE seq = ?", (seq,))], seq,
                     needs_head=seq == len(recs))


def swap(recs: list[Record], rng: random.Random) -> Tampering:
    i, j = sorted(rng.sample(range(1, len(recs) + 1), 2))
    return Tampering("swap", f"swap seqs {i} and {j}", [
        ("UPDATE ledger_events SET seq = -1 WHERE seq = ?", (i,)),
        ("UPDATE ledger_events SET seq = ? WHERE seq = ?", (i, j)),
        ("UPDATE ledger_events SET seq = ? WHERE seq = -1", (j,)),
    ], i)


def insert(recs: list[Record], rng: random.Random) -> Tampering:
    n = len(recs)
    k = rng.randint(1, n + 1)
    prev = recs[k - 2].hash if k > 1 else GENESIS
    ts = recs[k - 2].ts + 1 if k > 1 else recs[0].ts - 1
    payload = json.dumps({"changes": [{"op": "set", "path": ["server", "port"],
                                       "value": rng.randint(1, 65535)}]}).encode()
    variant = rng.choice(["linked", "wrong-link", "bad-hash"] if k <= n
                         else ["wrong-link", "bad-hash"])
    if variant == "wrong-link":  # a correct hash over a wrong previous link
        prev = rng.choice([GENESIS, os.urandom(32), *(r.hash for r in recs if r.hash != prev)])
        if prev == (recs[k - 2].hash if k > 1 else GENESIS):
            prev = os.urandom(32)
    h = link(prev, k, ts, "mallory", "forged", "api", "change", payload)
    if variant == "bad-hash":
        h = os.urandom(32)
    # a correctly linked forgery passes itself; the event it displaced is the first bad
    expected = k + 1 if variant == "linked" else k
    return Tampering("insert", f"forged event at seq {k} ({variant}), later seqs shifted", [
        ("UPDATE ledger_events SET seq = -seq - 1 WHERE seq >= ?", (k,)),
        ("UPDATE ledger_events SET seq = -seq WHERE seq < 0", ()),
        ("INSERT INTO ledger_events (seq, ts, actor, reason, source, kind, payload, "
         "prev_hash, hash) VALUES (?, ?, 'mallory', 'forged', 'api', 'change', ?, ?, ?)",
         (k, ts, payload, prev, h)),
    ], expected)


def truncate(recs: list[Record], rng: random.Random) -> Tampering:
    n = len(recs)
    keep = rng.randint(0, n - 1)
    return Tampering("truncate", f"tail cut after seq {keep}",
                     [("DELETE FROM ledger_events WHERE seq > ?", (keep,))], keep + 1,
                     needs_head=True)


KINDS = [(byte_change, 50), (delete, 10), (swap, 10), (insert, 15), (truncate, 15)]


def tamper(path: Path, t: Tampering) -> None:
    conn = apsw.Connection(str(path))
    try:
        conn.execute("DROP TRIGGER IF EXISTS ledger_events_no_update; "
                     "DROP TRIGGER IF EXISTS ledger_events_no_delete; "
                     "DROP TRIGGER IF EXISTS ledger_events_gap_free")
        with conn:
            for sql, args in t.statements:
                conn.execute(sql, args)
    finally:
        conn.close()


def check_verify(path: Path, t: Tampering, head: bytes, route: int) -> None:
    """verify through one of the library's doors must fail at the expected seq."""
    if route == 0:
        store = SqliteConfigStore(path)  # a writer: the dropped triggers come back
        report = store.ledger.verify(expect_head=head)
    elif route == 1:
        store = SqliteConfigStore(path)
        report = run(store.verify(expect_head=head))
    else:
        store = SqliteConfigStore(path, read_only=True)
        report = store.ledger.verify(head)
    try:
        assert not report.ok, f"{t.what}: verify passed"
        assert report.first_bad_seq == t.expected, (
            f"{t.what}: verify named seq {report.first_bad_seq} ({report.problem}), "
            f"expected {t.expected}")
        if not t.needs_head:  # then it shows without the recorded head too
            plain = store.ledger.verify()
            assert (plain.ok, plain.first_bad_seq) == (False, t.expected), t.what
        if route == 0:
            # the other readers report a damaged log with a typed error, or read it
            for read in (store.ledger.head_state, lambda: list(store.ledger.events()),
                         lambda: run(store.load_raw())):
                with contextlib.suppress(LedgerError):
                    read()
    finally:
        store.ledger.close()


def test_a_thousand_tamperings_are_all_detected_and_named(base: Base) -> None:
    rng = random.Random(stats.SEED)
    makers = [m for m, w in KINDS for _ in range(w)]
    by_kind: dict[str, int] = {}
    cli_trials: list[tuple[Path, Tampering]] = []
    with scratch_dir("tamper") as scratch:
        for trial in range(TRIALS):
            t = rng.choice(makers)(base.records, rng)
            path = scratch / f"t{trial}.db"
            path.write_bytes(base.data)
            tamper(path, t)
            if len(cli_trials) < CLI_SAMPLE and trial % max(1, TRIALS // CLI_SAMPLE) == 0:
                cli_trials.append((path, t))  # checked through the CLI below, untouched
            else:
                check_verify(path, t, base.head, trial % 3)
                stats.add("tamper_detected")
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            by_kind[t.kind] = by_kind.get(t.kind, 0) + 1
            stats.add("tamper_trials")

        def through_cli(item: tuple[Path, Tampering]) -> None:
            path, t = item
            as_json = t.expected % 2 == 0
            res = run_cli("--db", str(path), *(["--json"] if as_json else []), "verify",
                          "--expect-head", base.head.hex())
            assert res.code == 3, f"{t.what}: exit {res.code}: {res.err}"
            assert f"seq {t.expected}" in res.err, f"{t.what}: {res.err}"
            assert "Traceback" not in res.err
            if as_json:
                assert json.loads(res.out)["first_bad_seq"] == t.expected, t.what
            check_verify(path, t, base.head, 0)  # and the library agrees
            stats.add("tamper_cli")
            stats.add("tamper_detected")

        pool_map(through_cli, cli_trials)
    assert sum(by_kind.values()) == TRIALS
    if TRIALS >= 500:
        assert set(by_kind) == {"byte", "byte-invalid-utf8", "delete", "swap", "insert",
                                "truncate"}, by_kind
