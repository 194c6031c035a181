"""Promise 3: tampering is detected. At least 1,000 random trials, over several seeds
(the run's LEDGER_TORTURE_SEED and fixed ones, among them 72562, which once let a stray
seq through), on copies of a real 44-event ledger (config changes, provider keys, a
shred, a rollback, a snapshot every 8 events; signed at event 41, a checkpoint, and
MAC'd at every event up to the head, 44: events 42..44 are the window after the last
checkpoint, as a writer killed before its close leaves it):

- events: one byte of any column of one event changed (text columns may become invalid
  UTF-8), an event deleted, two swapped, a forged one inserted (shifting later seqs, or
  correctly hashed over a wrong previous link), the tail cut off, a stray copy of an
  event at a negative seq or past the head;
- derived data: a snapshot's bytes or content changed (its MAC frame kept), moved, or
  stripped of its MAC; the signed head changed or removed;
- the secrets table: a sealed row deleted, a shred faked, an orphan row added;
- a foreign trigger that swallows inserts (the next write is refused);
- bundle meta and lines: format_version, a bogus key_check, unknown meta, an invalid
  base64 secret, a re-chained undecodable payload, a re-chained time of 2^63-1, a
  header naming another head (the import is refused, nothing is written);
- a re-chained forgery: one event rewritten and every later hash recomputed (the
  chain alone cannot tell; the pinned signing key does), at or before the signed
  checkpoint (a pinned verify without the ledger key fails too);
- the head MAC: its row changed, forged or removed;
- a re-chained forgery inside the window after the checkpoint, the MAC row left as it
  was, forged to claim the new head, or removed: verify with the ledger key catches
  each; a pinned verify without the key names the window (and fails when no MAC row
  even claims the head).

`verify` must catch every one and name the first bad seq, computed per kind (writes
and imports must be refused instead, for the two kinds that are not in the database);
a sample goes through `python -m ledger --db COPY verify` (exit 3, the seq named). The
summary line prints the count per class.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import apsw
import msgspec
import pytest

from ledger import SqliteConfigStore
from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE, SecretRow
from ledger.core.chain import GENESIS, link
from ledger.core.events import Record
from ledger.engine.vault import KeySource
from ledger.errors import LedgerError, StoreError
from ledger.ops.bundle import import_bundle
from projections.snapshots import decode_state, encode_state
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
    key: bytes
    pinned: str  # the signing key's fingerprint, as an operator pins it
    snapshots: list[tuple[int, bytes, bytes]]  # (seq, hash, stored state)
    secrets: list[SecretRow]
    signature: str
    mac: str
    signed_seq: int  # the last checkpoint; events after it are vouched by the MAC only
    bundle: list[str]  # the lines of a bundle with secrets


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    from ledger.ops.bundle import write_bundle

    path = tmp_path_factory.mktemp("tamper") / "moltis.db"
    key = os.urandom(32)
    build_real_ledger(path, key)
    # the window: a writer signs its first append (41), MACs the next ones and is killed
    # before its close would sign the head (no clock in it: checkpoints far away)
    writer = SqliteConfigStore(path, keys=KeySource(key=key))
    writer.ledger.voucher.every, writer.ledger.voucher.secs = 10_000, 1e9
    for i in range(4):
        run(writer.update_raw(lambda c, i=i: setattr(c.server, "port", 7000 + i), actor="w"))
    writer.ledger.backend.checkpoint()
    writer.ledger.backend.close()  # no Ledger.close(): no checkpoint on the way out
    store = SqliteConfigStore(path, keys=KeySource(key=key))
    report = store.ledger.verify()
    assert report.ok and not report.notes and report.key_fingerprint, report
    assert (report.signed_seq, report.mac_seq) == (41, 44), report
    out = io.StringIO()
    write_bundle(store.ledger, out, with_secrets=True)
    backend = store.ledger.backend
    records = list(backend.read())
    snapshots = []
    for seq in backend.snapshot_seqs():
        snap = backend.snapshot_at(seq)
        assert snap is not None
        snapshots.append((seq, bytes(snap.hash), bytes(snap.state)))
    assert len(snapshots) >= 4
    secrets = list(backend.secrets())
    signature = backend.get_meta(HEAD_SIGNATURE)
    mac = backend.get_meta(HEAD_MAC)
    assert signature is not None and mac is not None
    store.ledger.backend.close()
    return Base(path.read_bytes(), records, records[-1].hash, key, report.key_fingerprint,
                snapshots, secrets, signature, mac, 41, out.getvalue().splitlines())


@dataclass
class Tampering:
    kind: str
    what: str
    statements: list[tuple[str, tuple[object, ...]]]
    expected: int  # the first bad seq verify must name
    needs_head: bool = False  # a cut tail: only the recorded head shows it
    # "verify": verify names `expected`; "pinned": the same, with the pinned key only;
    # "keyed": with the ledger key alone (no recorded head, no pin: the head MAC tells);
    # "write": the next write is refused; "import": importing `bundle` is refused
    mode: str = "verify"
    bundle: list[str] | None = None
    # what a pinned verify without the ledger key says: (ok, first bad seq, a note)
    keyless: tuple[bool, int | None, str | None] | None = None


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


def byte_change(base: Base, rng: random.Random) -> Tampering:
    recs = base.records
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


def delete(base: Base, rng: random.Random) -> Tampering:
    recs = base.records
    seq = rng.randint(1, len(recs))
    return Tampering("delete", f"delete seq {seq}",
                     [("DELETE FROM ledger_events WHERE seq = ?", (seq,))], seq,
                     needs_head=seq == len(recs))


def swap(base: Base, rng: random.Random) -> Tampering:
    recs = base.records
    i, j = sorted(rng.sample(range(1, len(recs) + 1), 2))
    return Tampering("swap", f"swap seqs {i} and {j}", [
        ("UPDATE ledger_events SET seq = -1 WHERE seq = ?", (i,)),
        ("UPDATE ledger_events SET seq = ? WHERE seq = ?", (i, j)),
        ("UPDATE ledger_events SET seq = ? WHERE seq = -1", (j,)),
    ], i)


def insert(base: Base, rng: random.Random) -> Tampering:
    recs = base.records
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


def truncate(base: Base, rng: random.Random) -> Tampering:
    recs = base.records
    n = len(recs)
    keep = rng.randint(0, n - 1)
    return Tampering("truncate", f"tail cut after seq {keep}",
                     [("DELETE FROM ledger_events WHERE seq > ?", (keep,))], keep + 1,
                     needs_head=True)


def stray(base: Base, rng: random.Random) -> Tampering:
    n = len(base.records)
    seq = rng.randint(1, n)
    at = rng.choice([-rng.randint(1, 2**62), n + rng.randint(2, 1000)])
    return Tampering("stray", f"a copy of seq {seq} at seq {at}", [(
        f"INSERT INTO ledger_events SELECT {at}, ts, actor, reason, source, kind, payload, "
        "prev_hash, hash FROM ledger_events WHERE seq = ?", (seq,))], n + 1)


def snapshot(base: Base, rng: random.Random) -> Tampering:
    seq, _h, blob = rng.choice(base.snapshots)
    frame = blob[:36]
    variant = rng.choice(["byte", "content", "moved", "stripped"])
    if variant == "byte":
        changed, what = _changed_byte(blob, rng)
        return Tampering("snapshot", f"snapshot {seq} {what}", [
            ("UPDATE ledger_snapshots SET state = ? WHERE seq = ?", (changed, seq))], seq)
    state = decode_state(blob)
    port = rng.randint(1, 65535)
    edited = encode_state(state.__class__(
        state.seq, state.hash, state.ts, {**state.config, "server": {"port": port}},
        state.keys, state.prov_config, state.prov_keys))
    if variant == "content":
        return Tampering("snapshot", f"snapshot {seq} content (port {port}), MAC frame kept",
                         [("UPDATE ledger_snapshots SET state = ? WHERE seq = ?",
                           (frame + edited, seq))], seq)
    if variant == "stripped":
        return Tampering("snapshot", f"snapshot {seq} stripped of its MAC and edited",
                         [("UPDATE ledger_snapshots SET state = ? WHERE seq = ?",
                           (edited, seq))], seq)
    taken = {s for s, _, _ in base.snapshots}
    to = rng.choice([s for s in range(1, len(base.records) + 1) if s not in taken])
    return Tampering("snapshot", f"snapshot {seq} moved to seq {to}", [
        ("UPDATE ledger_snapshots SET seq = ? WHERE seq = ?", (to, seq))], to)  # a missing
    # snapshot is no harm (snapshots are optional); the one at the wrong seq is


def signed_head(base: Base, rng: random.Random) -> Tampering:
    n = len(base.records)
    if rng.random() < 0.3:
        return Tampering("signed-head", "the head signature removed", [
            ("DELETE FROM ledger_meta WHERE key = ?", (HEAD_SIGNATURE,))], n, mode="pinned")
    changed, what = _changed_byte(base.signature.encode(), rng)
    return Tampering("signed-head", f"head signature {what}", [
        ("UPDATE ledger_meta SET value = CAST(? AS TEXT) WHERE key = ?",
         (changed, HEAD_SIGNATURE))], n)


def secret_row(base: Base, rng: random.Random) -> Tampering:
    live = [r for r in base.secrets if r.sealed is not None]
    row = rng.choice(live)
    variant = rng.choice(["delete", "fake-shred", "orphan"])
    if variant == "delete":
        return Tampering("secrets", f"sealed row {row.ref[:8]} deleted", [
            ("DELETE FROM ledger_secrets WHERE ref = ?", (row.ref,))], row.created_seq)
    if variant == "fake-shred":
        at = rng.randint(1, len(base.records))
        return Tampering("secrets", f"sealed row {row.ref[:8]} faked shredded at {at}", [
            ("UPDATE ledger_secrets SET sealed = NULL, shredded_seq = ? WHERE ref = ?",
             (at, row.ref))], at)
    at = rng.randint(1, len(base.records))
    return Tampering("secrets", f"an orphan sealed row claiming seq {at}", [
        ("INSERT INTO ledger_secrets (ref, sealed, created_seq) VALUES (?, ?, ?)",
         (os.urandom(12).hex(), row.sealed, at))], at)


def foreign_trigger(base: Base, rng: random.Random) -> Tampering:
    when = rng.choice(["", "WHEN NEW.seq > 0", "WHEN NEW.kind = 'change'"])
    return Tampering("foreign-trigger", f"a trigger swallowing inserts ({when or 'always'})", [
        (f"CREATE TRIGGER t_{rng.randrange(10**6)} BEFORE INSERT ON ledger_events {when} "
         "BEGIN SELECT RAISE(IGNORE); END", ())], 0, mode="write")


def _rechain(records: list[Record], k: int, **changes: object) -> list[Record]:
    """Event k changed as given, and every hash from k on recomputed."""
    out = list(records[:k - 1])
    prev = records[k - 2].hash if k > 1 else GENESIS
    for old in records[k - 1:]:
        r = msgspec.structs.replace(old, **changes) if old.seq == k else old
        h = link(prev, r.seq, r.ts, r.actor, r.reason, r.source, r.kind, r.payload)
        out.append(msgspec.structs.replace(r, prev_hash=prev, hash=h))
        prev = h
    return out


def rechained(base: Base, rng: random.Random, after_checkpoint: bool = False) -> Tampering:
    n = len(base.records)
    k = rng.randint(base.signed_seq + 1 if after_checkpoint else 1, n)
    rec = base.records[k - 1]
    forged = _rechain(base.records, k, reason=f"forged {rng.randrange(10**6)}")
    # the first snapshot at or after k no longer matches (its hash is the old event's);
    # without one, the signed head (or, in the window after it, the MAC'd head) is what
    # no longer is in the log
    s = base.signed_seq
    first = min((seq for seq, _, _ in base.snapshots if seq >= k),
                default=s if k <= s else n)
    statements = [("UPDATE ledger_events SET reason = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                   (r.reason, r.prev_hash, r.hash, r.seq)) for r in forged[k - 1:]]
    if k > s:
        return window(base, rng, k, statements)
    # at or before the checkpoint: the pin fails it even without the ledger key
    return Tampering("rechained", f"seq {k}'s reason rewritten ({rec.reason!r}), re-chained",
                     statements, first, mode="pinned", keyless=(False, first, None))


def in_window(base: Base, rng: random.Random) -> Tampering:
    return rechained(base, rng, after_checkpoint=True)


def window(base: Base, rng: random.Random, k: int,
           statements: list[tuple[str, tuple[object, ...]]]) -> Tampering:
    """Event k of the window after the last checkpoint re-chained; the MAC row left as
    it was, forged to claim the new head, or removed."""
    n, s = len(base.records), base.signed_seq
    variant = rng.choice(["stale-mac", "forged-mac", "no-mac"])
    what = f"seq {k} (after the checkpoint {s}) re-chained, {variant}"
    if variant == "stale-mac":  # the MAC'd head (n) is no longer in the log
        return Tampering("window", what, statements, n, mode="keyed",
                         keyless=(False, s + 1, None))
    if variant == "no-mac":  # the vouched head is the checkpoint: the rest is not vouched
        return Tampering("window", what, [
            *statements, ("DELETE FROM ledger_meta WHERE key = ?", (HEAD_MAC,))], s + 1,
            mode="pinned", keyless=(False, s + 1, None))
    new_head = _rechain(base.records, k, reason=statements[0][1][0])[-1].hash
    return Tampering("window", what, [*statements, (
        "UPDATE ledger_meta SET value = ? WHERE key = ?",
        (f"v1 {n} {new_head.hex()} {os.urandom(32).hex()}", HEAD_MAC))], n, mode="keyed",
        keyless=(True, None, f"events {s + 1}..{n} come after the last signed checkpoint"))


def head_mac(base: Base, rng: random.Random) -> Tampering:
    n = len(base.records)
    variant = rng.choice(["byte", "byte", "removed", "claim"])
    if variant == "removed":  # only the checkpoint vouches: the pin names what follows it
        s = base.signed_seq
        return Tampering("head-mac", "the head MAC removed", [
            ("DELETE FROM ledger_meta WHERE key = ?", (HEAD_MAC,))], s + 1, mode="pinned",
            keyless=(False, s + 1, None))
    if variant == "claim":  # a MAC row claiming an older head (a replayed row)
        at = base.records[rng.randrange(n - 1)]
        return Tampering("head-mac", f"the head MAC claims event {at.seq}", [
            ("UPDATE ledger_meta SET value = ? WHERE key = ?",
             (f"v1 {at.seq} {at.hash.hex()} {os.urandom(32).hex()}", HEAD_MAC))], n)
    changed, what = _changed_byte(base.mac.encode(), rng)
    return Tampering("head-mac", f"head MAC {what}", [
        ("UPDATE ledger_meta SET value = CAST(? AS TEXT) WHERE key = ?",
         (changed, HEAD_MAC))], n)


def bundle_meta(base: Base, rng: random.Random) -> Tampering:
    lines = list(base.bundle)
    header = json.loads(lines[0])
    events = [i for i, line in enumerate(lines) if '"seq"' in line[:8]]
    variant = rng.choice(["format_version", "key_check", "unknown-meta", "base64",
                          "undecodable", "far-future", "header-head"])

    def rechain_line(k: int, **changes: object) -> None:
        recs = _rechain(base.records, k, **changes)
        for r in recs[k - 1:]:
            i = events[r.seq - 1]
            item = json.loads(lines[i])
            item.update(ts=r.ts, payload=r.payload.decode("utf-8", "surrogateescape"),
                        prev_hash=r.prev_hash.hex(), hash=r.hash.hex())
            lines[i] = json.dumps(item, ensure_ascii=False)
        lines[0] = json.dumps({**header, "head": recs[-1].hash.hex()})

    k = rng.randint(1, len(base.records))
    if variant == "format_version":
        lines.append(json.dumps({"meta": {"format_version": "99"}}))
    elif variant == "key_check":
        lines.append(json.dumps({"meta": {"key_check": os.urandom(32).hex()}}))
    elif variant == "unknown-meta":
        lines.append(json.dumps({"meta": {"ledger_id": "0" * 32}}))
    elif variant == "base64":
        i = next(i for i, line in enumerate(lines) if line.startswith('{"secret"'))
        item = json.loads(lines[i])
        item["sealed"] = "!!" + str(item["sealed"])[2:]
        lines[i] = json.dumps(item)
    elif variant == "undecodable":
        rechain_line(k, kind="change", payload=b'{"changes": "not a list"}')
    elif variant == "far-future":
        rechain_line(k, ts=2**63 - 1)
    else:
        lines[0] = json.dumps({**header, "head": os.urandom(32).hex()})
    return Tampering("bundle", f"bundle: {variant} (event {k})", [], 0, mode="import",
                     bundle=lines)


KINDS = [(byte_change, 25), (delete, 6), (swap, 6), (insert, 8), (truncate, 8), (stray, 6),
         (snapshot, 10), (signed_head, 6), (secret_row, 9), (foreign_trigger, 4),
         (bundle_meta, 6), (rechained, 6), (in_window, 5), (head_mac, 5)]
CLASSES = {"byte", "byte-invalid-utf8", "delete", "swap", "insert", "truncate", "stray",
           "snapshot", "signed-head", "secrets", "foreign-trigger", "bundle", "rechained",
           "window", "head-mac"}


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


def check_verify(path: Path, t: Tampering, base: Base, route: int) -> None:
    """verify through one of the library's doors must fail at the expected seq."""
    keys = KeySource(key=base.key)
    head = None if t.mode in ("pinned", "keyed") else base.head
    pinned = base.pinned if t.mode == "pinned" else None
    if route == 0:
        store = SqliteConfigStore(path, keys=keys)  # a writer: the dropped triggers come back
        report = store.ledger.verify(expect_head=head, expect_key=pinned)
    elif route == 1 and pinned is None:
        store = SqliteConfigStore(path, keys=keys)
        report = run(store.verify(expect_head=head))
    else:
        store = SqliteConfigStore(path, read_only=True, keys=keys)
        report = store.ledger.verify(head, pinned)
    try:
        assert not report.ok, f"{t.what}: verify passed"
        assert report.first_bad_seq == t.expected, (
            f"{t.what}: verify named seq {report.first_bad_seq} ({report.problem}), "
            f"expected {t.expected}")
        if not t.needs_head and t.mode != "pinned":  # then it shows without a pin too
            plain = store.ledger.verify()
            assert (plain.ok, plain.first_bad_seq) == (False, t.expected), t.what
        if t.mode == "pinned":  # the chain alone cannot tell (that is what the pin is for)
            assert store.ledger.verify_chain().ok or t.kind != "rechained", t.what
        if t.keyless is not None:
            _check_keyless(path, t, base)
        if route == 0:
            # the other readers report a damaged log with a typed error, or read it
            for read in (store.ledger.head_state, lambda: list(store.ledger.events()),
                         lambda: run(store.load_raw())):
                with contextlib.suppress(LedgerError):
                    read()
    finally:
        store.ledger.close()


def _check_keyless(path: Path, t: Tampering, base: Base) -> None:
    """A pinned verify by someone without the ledger key (an auditor with the pin)."""
    assert t.keyless is not None
    ok, seq, note = t.keyless
    store = SqliteConfigStore(path, read_only=True,
                              keys=KeySource(key_file=path.with_suffix(".none.key"), env={}))
    try:
        report = store.ledger.verify(None, base.pinned)
    finally:
        store.ledger.close()
    assert (report.ok, report.first_bad_seq) == (ok, seq), (
        f"{t.what}: keyless pinned verify gave {report.ok}, {report.first_bad_seq} "
        f"({report.problem}), expected {ok}, {seq}")
    if note is not None:
        assert any(note in n for n in report.notes), (t.what, report.notes)
    stats.add("tamper_keyless")


def check_refused(path: Path, t: Tampering, base: Base) -> None:
    """A write (foreign trigger) or an import (bundle) must be refused, changing nothing."""
    keys = KeySource(key=base.key)
    if t.mode == "write":
        store = SqliteConfigStore(path, keys=keys)
        try:
            with pytest.raises(StoreError, match="not stored"):
                run(store.update_raw(lambda c: setattr(c.server, "port", 4242), actor="t"))
            assert store.ledger.backend.head().hash == base.head, t.what
        finally:
            store.ledger.close()
        return
    assert t.bundle is not None
    bundle = path.with_suffix(".bundle")
    bundle.write_text("\n".join(t.bundle) + "\n", encoding="utf-8")
    store = SqliteConfigStore(path, keys=keys)
    try:
        with pytest.raises(LedgerError):
            import_bundle(bundle, store.ledger)
        assert store.ledger.backend.head().seq == 0, t.what
        assert not list(store.ledger.backend.secrets()), t.what
    finally:
        store.ledger.close()


SEEDS = sorted({stats.SEED, 72562, 1, 9001})


def test_a_thousand_tamperings_are_all_detected_and_named(base: Base) -> None:
    per_seed = -(-TRIALS // len(SEEDS))
    by_kind: dict[str, int] = {}
    cli_trials: list[tuple[Path, Tampering]] = []
    with scratch_dir("tamper") as scratch:
        for seed in SEEDS:
            rng = random.Random(seed)
            makers = [m for m, w in KINDS for _ in range(w)]
            for trial in range(per_seed):
                t = rng.choice(makers)(base, rng)
                path = scratch / f"s{seed}-t{trial}.db"
                if t.mode == "import":
                    pass  # a fresh, empty ledger to import into
                else:
                    path.write_bytes(base.data)
                    tamper(path, t)
                sample = (t.mode == "verify" and t.kind not in ("snapshot", "window")
                          and len(cli_trials) < CLI_SAMPLE
                          and trial % max(1, per_seed // CLI_SAMPLE) == 0)
                if sample:
                    cli_trials.append((path, t))  # checked through the CLI below, untouched
                else:
                    if t.mode in ("write", "import"):
                        check_refused(path, t, base)
                    else:
                        check_verify(path, t, base, trial % 3)
                    stats.add("tamper_detected")
                    for suffix in ("", "-wal", "-shm", ".bundle"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
                by_kind[t.kind] = by_kind.get(t.kind, 0) + 1
                stats.add("tamper_trials")
                stats.add(f"tamper_class:{t.kind}")

        def through_cli(item: tuple[Path, Tampering]) -> None:
            path, t = item
            as_json = t.expected % 2 == 0
            env = {**os.environ, "MOLTIS_LEDGER_KEY": base.key.hex()}
            res = run_cli("--db", str(path), *(["--json"] if as_json else []), "verify",
                          "--expect-head", base.head.hex(), env=env)
            assert res.code == 3, f"{t.what}: exit {res.code}: {res.err}"
            assert f"seq {t.expected}" in res.err, f"{t.what}: {res.err}"
            assert "Traceback" not in res.err
            if as_json:
                assert json.loads(res.out)["first_bad_seq"] == t.expected, t.what
            check_verify(path, t, base, 0)  # and the library agrees
            stats.add("tamper_cli")
            stats.add("tamper_detected")

        pool_map(through_cli, cli_trials)
    assert sum(by_kind.values()) == per_seed * len(SEEDS) >= TRIALS
    if TRIALS >= 500:
        assert set(by_kind) == CLASSES, by_kind
