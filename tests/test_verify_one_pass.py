"""Issue 16, figure i13c: `verify` reads the log once for the chain walk and the replay.

Each event is replayed once the chain walk has proven it links, and each snapshot is
compared on the way. What must not change: the chain's report comes first (a snapshot
or replay problem before a chain break is not what verify names), then the rows, then
the snapshots and the replay; after a snapshot or replay problem the chain is still
walked to the end; and every event is read and passed to a progress tracker once.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import apsw
import blake3
import msgspec

from ledger import SqliteConfigStore
from ledger.core.chain import CONTEXT, GENESIS, link
from ledger.core.events import Record
from ledger.engine.audit import audit
from projections.snapshots import decode_state, encode_state
from tests.conftest import run
from tests.test_integrity import fill

EVERY = 5
EVENTS = 23


def _ledger(path: Path) -> SqliteConfigStore:
    store = SqliteConfigStore(path)
    store.ledger.snapshot_every = EVERY
    fill(store, EVENTS)
    assert store.ledger.backend.snapshot_seqs() == [5, 10, 15, 20]
    store.ledger.close()
    return store


def _conn(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.execute("DROP TRIGGER IF EXISTS ledger_events_no_update; "
                 "DROP TRIGGER IF EXISTS ledger_events_no_delete; "
                 "DROP TRIGGER IF EXISTS ledger_events_gap_free")
    return conn


def _edit_snapshot(path: Path, seq: int) -> None:
    """The snapshot's state changed, its MAC framing kept (the attacker has no key)."""
    conn = _conn(path)
    (blob,) = conn.execute("SELECT state FROM ledger_snapshots WHERE seq = ?",
                           (seq,)).fetchone()
    blob = bytes(blob)
    start = 36 if blob.startswith(b"\xffLS1") else 0
    state = decode_state(blob[start:])
    state = msgspec.structs.replace(state, config={**state.config, "extra": {"x": 1}})
    conn.execute("UPDATE ledger_snapshots SET state = ? WHERE seq = ?",
                 (blob[:start] + encode_state(state), seq))
    conn.close()


def _edit_payload(path: Path, seq: int, payload: bytes, *, rechain: bool) -> None:
    conn = _conn(path)
    rows = [Record(*r) for r in conn.execute(
        "SELECT seq, ts, actor, reason, source, kind, payload, prev_hash, hash "
        "FROM ledger_events ORDER BY seq")]
    with conn:
        conn.execute("UPDATE ledger_events SET payload = ? WHERE seq = ?", (payload, seq))
        if rechain:  # what someone without the key can do: only the head MAC tells
            prev = rows[seq - 2].hash if seq > 1 else GENESIS
            for r in rows[seq - 1:]:
                body = payload if r.seq == seq else r.payload
                h = link(prev, r.seq, r.ts, r.actor, r.reason, r.source, r.kind, body)
                conn.execute("UPDATE ledger_events SET prev_hash = ?, hash = ? WHERE seq = ?",
                             (prev, h, r.seq))
                prev = h
    conn.close()


def _verify(path: Path) -> tuple[object, list[int]]:
    store = SqliteConfigStore(path, read_only=True)
    seen: list[int] = []

    def track(records):
        for rec in records:
            seen.append(rec.seq)
            yield rec

    try:
        return audit(store.ledger, track=track), seen
    finally:
        store.ledger.close()


def test_a_sound_ledger_verifies_and_every_event_is_read_once(tmp_path):
    db = tmp_path / "l.db"
    _ledger(db)
    report, seen = _verify(db)
    assert report.ok and report.events == EVENTS and not report.notes
    assert seen == list(range(1, EVENTS + 1))


def test_an_edited_snapshot_is_named_and_the_chain_still_walked_to_the_end(tmp_path):
    db = tmp_path / "l.db"
    _ledger(db)
    _edit_snapshot(db, 10)
    report, seen = _verify(db)
    assert not report.ok and report.first_bad_seq == 10
    assert "snapshot 10" in (report.problem or "")
    assert report.head_seq == EVENTS  # the chain's own report, to the end of the log
    assert seen == list(range(1, EVENTS + 1))


def test_a_chain_break_after_an_edited_snapshot_is_what_verify_names(tmp_path):
    db = tmp_path / "l.db"
    _ledger(db)
    _edit_snapshot(db, 10)
    _edit_payload(db, 17, b'{"changes":[{"op":"set","path":["server","port"],"value":1}]}',
                  rechain=False)
    report, seen = _verify(db)
    assert not report.ok and report.first_bad_seq == 17
    assert "changed after it was written" in (report.problem or "")
    assert seen == list(range(1, 18))  # the walk stops at the break, as it always did


def test_a_rechained_payload_that_does_not_decode_is_named_by_the_replay(tmp_path):
    db = tmp_path / "l.db"
    _ledger(db)
    _edit_payload(db, 13, b'{"changes":[{"op":"bogus"}]}', rechain=True)
    report, seen = _verify(db)
    assert not report.ok
    # the replay fails at the event that does not decode, and names it
    assert report.first_bad_seq == 13
    assert "does not replay" in (report.problem or "") and "event 13" in report.problem
    assert seen == list(range(1, EVENTS + 1))


def _stray_snapshot(db: Path, seq: int) -> None:
    conn = _conn(db)
    (blob, h) = conn.execute("SELECT state, hash FROM ledger_snapshots WHERE seq = 20"
                             ).fetchone()
    conn.execute("INSERT INTO ledger_snapshots (seq, hash, state) VALUES (?, ?, ?)",
                 (seq, h, blob))
    conn.close()


def test_a_snapshot_past_the_end_of_the_log_is_outside_it(tmp_path):
    db = tmp_path / "l.db"
    _ledger(db)
    _stray_snapshot(db, 99)
    report, _ = _verify(db)
    assert not report.ok and report.first_bad_seq == 99
    assert f"outside the log (events 1..{EVENTS})" in (report.problem or "")
    # readers are not misled by it either
    assert run(SqliteConfigStore(db).load_raw()).server.port == 1000 + EVENTS - 1


def test_a_snapshot_past_the_end_is_named_before_a_bad_payload_on_the_way_to_it(tmp_path):
    db = tmp_path / "l.db"
    _ledger(db)
    _stray_snapshot(db, 99)
    _edit_payload(db, 22, b'{"changes":[{"op":"bogus"}]}', rechain=True)
    report, seen = _verify(db)
    assert not report.ok and report.first_bad_seq == 99
    assert "outside the log" in (report.problem or "")
    assert seen == list(range(1, EVENTS + 1))


def _reference_link(prev: bytes, seq: int, ts: int, actor: str, reason: str, source: str,
                    kind: str, payload: bytes) -> bytes:
    """The chain's rule written out plainly (ledger.core.chain's docstring): a fresh
    derive-key hasher per event, each text length-prefixed."""
    def text(value: str) -> bytes:
        data = value.encode("utf-8", "surrogateescape")
        return struct.pack(">I", len(data)) + data

    h = blake3.blake3(derive_key_context=CONTEXT)
    h.update(b"\x01" + prev + struct.pack(">QQ", seq, ts) + text(actor) + text(reason)
             + text(source) + text(kind) + struct.pack(">I", len(payload)) + payload)
    return h.digest()


def test_link_is_the_chains_rule_for_any_columns():
    rng = random.Random(16)
    texts = ["", "t", "ops@example", "r\udcff", "ünïcode", "x" * 300]
    prev = GENESIS
    for seq in range(1, 400):
        cols = (seq, rng.randrange(2**63), rng.choice(texts), rng.choice(texts) + str(seq % 7),
                rng.choice(texts), rng.choice(["change", "shred", "x"]), rng.randbytes(
                    rng.randrange(0, 200)))
        got = link(prev, *cols)
        assert got == _reference_link(prev, *cols)
        prev = got
