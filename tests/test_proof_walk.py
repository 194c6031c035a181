"""The chain walk behind every proof of a read (a load, `state_at`, a catch-up, verify)
hashes each event inline, not through `chain.link` (figures 6c, 7, i13c): it must
accept exactly what `link` chains and refuse every changed column, and a past state
folded straight from that walk must equal the full replay of the log up to it, with
events of another kind than a change (a shred) and a document other than the config
in its tail."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from ledger import SqliteConfigStore
from ledger.core.chain import GENESIS, ChainWalk, link
from ledger.core.events import Record
from ledger.core.secret_refs import Secret


def _chained(n: int, rng: random.Random) -> list[Record]:
    records, prev = [], GENESIS
    for seq in range(1, n + 1):
        ts = 1_700_000_000_000_000 + seq * rng.randint(1, 10**6)
        actor = rng.choice(["ops", "héllo", "a\udcffb", ""])  # a tampered, non-UTF-8 text
        reason, source = rng.choice(["", "why", "x" * 300]), rng.choice(["api", "cli"])
        kind = rng.choice(["change", "shred"])
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        h = link(prev, seq, ts, actor, reason, source, kind, payload)
        records.append(Record(seq, ts, actor, reason, source, kind, payload, prev, h))
        prev = h
    return records


def _walk(records: list[Record]) -> tuple[int, int | None]:
    walk = ChainWalk()
    passed = sum(1 for _ in walk.checked(records))
    return passed, walk.report().first_bad_seq


def test_the_walk_accepts_what_link_chains() -> None:
    records = _chained(300, random.Random(5))
    assert _walk(records) == (300, None)
    assert ChainWalk().report().head_hash == GENESIS


@pytest.mark.parametrize("column", ["ts", "actor", "reason", "source", "kind", "payload",
                                    "hash"])
def test_the_walk_refuses_any_changed_column(column: str) -> None:
    rng = random.Random(column)
    records = _chained(40, rng)
    at = rng.randint(0, 39)
    old = getattr(records[at], column)
    changed = {"ts": lambda: old + 1, "hash": lambda: bytes(32),
               "payload": lambda: old + b"!",
               "kind": lambda: "change" if old == "shred" else "shred"}
    new = changed.get(column, lambda: old + "!")()
    records[at] = msgspec.structs.replace(records[at], **{column: new})
    assert _walk(records) == (at, at + 1)


def test_a_time_no_writer_can_store_is_refused_not_raised() -> None:
    records = _chained(3, random.Random(1))
    records[1] = msgspec.structs.replace(records[1], ts=-1)
    assert _walk(records) == (1, 2)
    records[1] = msgspec.structs.replace(records[1], ts=2**64)
    assert _walk(records) == (1, 2)


def test_past_states_fold_straight_from_the_walk_as_the_replay_does(tmp_path: Path) -> None:
    store = SqliteConfigStore(tmp_path / "l.db")
    ledger = store.ledger
    ledger.snapshot_every = 5  # the shred (event 8) ends a tail read from a snapshot
    ledger.edit({("server", "port"): 1000})
    for n in range(1, 15):
        if n % 5 == 0:
            ledger.save_documents(keys={"openai": {"api_key": Secret(f"sk-test-{n:04d}xyz")}})
        elif n % 7 == 0:
            refs = ledger.refs_with_fingerprint(ledger.vault.fingerprint("sk-test-0005xyz"))
            assert refs
            ledger.shred(refs, reason="test")
        else:
            ledger.edit({("server", "port"): 1000 + n})
    head = ledger.head_state()
    kinds = [ev.kind for ev in ledger.events()]
    assert kinds[7] == "shred" and ledger.backend.snapshot_seqs() == [5, 10]
    for seq in range(head.seq + 1):
        want = ledger.replay(until=seq)
        got = ledger.state_at(seq)
        assert (got.seq, got.hash, got.ts) == (want.seq, want.hash, want.ts)
        assert (got.config, got.keys) == (want.config, want.keys)
        assert (got.prov_config, got.prov_keys) == (want.prov_config, want.prov_keys)
    store.ledger.close()
