"""Issue 13, the last gaps: the head MAC on every append with Ed25519 signatures only at
checkpoints, no trust on first use (an ordinary write never vouches for a head nobody
vouched for; `sign-head --adopt` is the operator's act), and what `verify` says about
the window after the last signed checkpoint, with and without the ledger key. Real
SQLite files, the CLI in-process through its real entry point."""

from __future__ import annotations

import os
from pathlib import Path

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE
from ledger.core.chain import GENESIS, link
from ledger.engine.integrity_keys import IntegrityKeys
from ledger.engine.vault import KeySource
from ledger.errors import VerificationError
from tests.conftest import run
from tests.test_integrity import invoke


def store_at(db: Path, *, every: int = 256, secs: float = 3600.0,
             keys: KeySource | None = None) -> SqliteConfigStore:
    """A store whose checkpoints are every `every` events (and `secs`, far away by
    default, so a test never depends on the clock)."""
    store = SqliteConfigStore(db, keys=keys)
    store.ledger.voucher.every, store.ledger.voucher.secs = every, secs
    return store


def bump(store: SqliteConfigStore, n: int = 1) -> None:
    for _ in range(n):
        run(store.update_raw(lambda c: setattr(c.tools, "agent_timeout_secs",
                                               c.tools.agent_timeout_secs + 1), actor="t"))


def forget(store: SqliteConfigStore) -> None:
    """Close, and drop what this process remembers vouching for on that database (the
    group committer's memory, shared by its ledgers on one file): as a new process."""
    committer = store.ledger._committer
    if committer is not None:
        committer.shared.pop("vouched", None)
    store.ledger.close()


def abandon(store: SqliteConfigStore) -> None:
    """Stop using a store without close() (as a process killed after its last write):
    no checkpoint signature on the way out."""
    store.ledger.backend.close()


def meta(db: Path) -> dict[str, str]:
    conn = apsw.Connection(str(db))
    try:
        return dict(conn.execute("SELECT key, value FROM ledger_meta"))
    finally:
        conn.close()


def sql(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    conn = apsw.Connection(str(db))
    conn.execute("DROP TRIGGER IF EXISTS ledger_events_no_update; "
                 "DROP TRIGGER IF EXISTS ledger_events_no_delete")
    with conn:
        for text, args in statements:
            conn.execute(text, args)
    conn.close()


def rechain(db: Path, from_seq: int) -> None:
    """Rewrite one event's reason and recompute every hash from there, as anyone can."""
    conn = apsw.Connection(str(db))
    conn.execute("DROP TRIGGER IF EXISTS ledger_events_no_update")
    prev = GENESIS
    with conn:
        for seq, ts, actor, old, source, kind, payload in list(conn.execute(
                "SELECT seq, ts, actor, reason, source, kind, payload FROM ledger_events "
                "ORDER BY seq")):
            reason = "forged" if seq == from_seq else old
            h = link(prev, seq, ts, actor, reason, source, kind, payload)
            conn.execute("UPDATE ledger_events SET reason = ?, prev_hash = ?, hash = ? "
                         "WHERE seq = ?", (reason, prev, h, seq))
            prev = h
    conn.close()


def keyless(tmp_path: Path) -> KeySource:
    return KeySource(key_file=tmp_path / "no-such.key", env={})


# -- the append path: a MAC every time, a signature at checkpoints -----------------------

def test_every_append_macs_the_head_and_signs_only_at_checkpoints(tmp_path):
    db = tmp_path / "moltis.db"
    store = store_at(db, every=4)
    signed: list[int] = []
    real = IntegrityKeys.sign_head

    def counting(self: IntegrityKeys, seq: int, head_hash: bytes,
                 ledger_id: bytes | None = None):
        signed.append(seq)
        return real(self, seq, head_hash, ledger_id)

    keys_cls = IntegrityKeys
    keys_cls.sign_head = counting  # type: ignore[method-assign]
    try:
        bump(store, 10)
    finally:
        keys_cls.sign_head = real  # type: ignore[method-assign]
    # the first append of a process signs, then every 4th event
    assert signed == [1, 5, 9]
    stored = meta(db)
    assert stored[HEAD_MAC].startswith("v1 10 ") and stored[HEAD_SIGNATURE].startswith("v2 9 ")
    report = store.ledger.verify(expect_key=store.signing_key_fingerprint())
    assert report.ok and (report.signed_seq, report.mac_seq) == (9, 10) and not report.notes
    store.ledger.close()  # a checkpoint on the way out
    assert meta(db)[HEAD_SIGNATURE].startswith("v2 10 ")


def test_a_checkpoint_is_due_when_the_last_signature_is_old_enough(tmp_path):
    store = store_at(tmp_path / "moltis.db", every=10_000, secs=0.0)
    bump(store, 3)
    assert store.ledger.verify().signed_seq == 3  # no time passes below 0 s: every one


def test_a_pinned_verify_without_the_key_names_the_window_after_the_checkpoint(
        tmp_path, capsys, monkeypatch):
    db = tmp_path / "moltis.db"
    key_hex = os.environ["MOLTIS_LEDGER_KEY"]
    store = store_at(db, every=4)
    bump(store, 6)  # signed at 1 and 5, MAC'd at 6
    fpr = store.signing_key_fingerprint()
    abandon(store)
    assert fpr
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(tmp_path / "elsewhere.key"))
    plain = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert plain.exit_code == 0, plain.output
    assert "events 6..6 come after the last signed checkpoint (event 5)" in plain.output
    # a forgery inside the window that leaves the MAC row as it was: its claim is not
    # the head, so even without the key the window is named as not vouched for
    rechain(db, 6)
    stale = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert stale.exit_code == 3 and "events 6..6 are not vouched for" in stale.output
    # the forger also makes the MAC row claim the new head: without the key, nothing
    # here can tell (the window is named) ...
    conn = apsw.Connection(str(db))
    (new_hash,) = conn.execute("SELECT hash FROM ledger_events WHERE seq = 6").fetchone()
    conn.close()
    sql(db, ("UPDATE ledger_meta SET value = ? WHERE key = ?",
             (f"v1 6 {bytes(new_hash).hex()} {os.urandom(32).hex()}", HEAD_MAC)))
    blind = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert blind.exit_code == 0 and "only the head MAC vouches for them" in blind.output
    # ... with the key, the head MAC does
    monkeypatch.setenv("MOLTIS_LEDGER_KEY", key_hex)
    caught = invoke(capsys, db, "verify")
    assert caught.exit_code == 3 and "head MAC (for event 6) does not check" in caught.output
    # a forgery at or before the checkpoint fails the pinned verify without the key
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    rechain(db, 5)
    early = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert early.exit_code == 3 and "signed head (event 5" in early.output


def test_a_group_commit_writes_one_mac_and_at_most_one_signature(tmp_path):
    """The group's test in test_group_commit counts signatures; here the meta rows."""
    db = tmp_path / "moltis.db"
    store = store_at(db, every=2)
    bump(store, 3)
    assert meta(db)[HEAD_SIGNATURE].startswith("v2 3 ")  # 1, then 3
    assert meta(db)[HEAD_MAC].startswith("v1 3 ")


# -- no trust on first use -----------------------------------------------------------------

def test_a_removed_signature_and_a_rechained_log_are_not_laundered_by_the_next_write(
        tmp_path, capsys):
    """The laundering sequence: delete the signature (and the MAC), re-chain the log,
    then a legitimate `set`. Before: that write signed the forged history, and the
    pinned verify passed."""
    db = tmp_path / "moltis.db"
    store = store_at(db)
    bump(store, 3)
    fpr = store.signing_key_fingerprint()
    forget(store)
    assert fpr
    sql(db, ("DELETE FROM ledger_meta WHERE key IN (?, ?)", (HEAD_SIGNATURE, HEAD_MAC)))
    rechain(db, 2)
    # a keyed ledger with events and no MAC row is refused outright by a keyed open
    # (tests/test_head_mac_gaps.py): the write is not made, so nothing is laundered
    head = SqliteConfigStore(db).ledger.backend.head()
    result = invoke(capsys, db, "set", "server.port", "8443")
    assert result.exit_code == 3, result.output
    assert "no head MAC row" in result.output and "sign-head --adopt" in result.output
    assert SqliteConfigStore(db).ledger.backend.head() == head
    assert HEAD_SIGNATURE not in meta(db) and HEAD_MAC not in meta(db)
    pinned = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert pinned.exit_code == 3 and "not signed" in pinned.output
    # with the ledger key at hand verify knows the signing key: nothing vouched for
    # fails (review A #3; it was a note with exit 0, which a cron job never sees)
    plain = invoke(capsys, db, "verify")
    assert plain.exit_code == 3 and "no event of this ledger is vouched for" in plain.output
    check = invoke(capsys, db, "check")
    assert "no head MAC row" in check.output


def test_a_signature_by_another_key_or_malformed_is_not_built_on(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    store = store_at(db)
    bump(store, 2)
    forget(store)
    other = IntegrityKeys(os.urandom(32))
    head = SqliteConfigStore(db).ledger.backend.head()
    for bad in (other.sign_head(head.seq, head.hash, b"x").encode(), "v1 garbage"):
        sql(db, ("DELETE FROM ledger_meta WHERE key = ?", (HEAD_MAC,)),
            ("UPDATE ledger_meta SET value = ? WHERE key = ?", (bad, HEAD_SIGNATURE)))
        writer = store_at(db)
        with pytest.raises(VerificationError, match="no head MAC row"):
            bump(writer)  # refused by the keyed open, before anything is written
        forget(writer)
        assert meta(db)[HEAD_SIGNATURE] == bad and HEAD_MAC not in meta(db)
        assert SqliteConfigStore(db).ledger.head_problem() is not None


def test_events_appended_without_the_key_leave_the_head_unvouched(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    store = store_at(db)
    bump(store, 2)
    forget(store)
    blind = store_at(db, keys=keyless(tmp_path))
    bump(blind)  # a writer without the ledger key (or a forger appending properly)
    forget(blind)
    writer = store_at(db)
    commit = run(writer.update_raw(lambda c: setattr(c.server, "port", 9999), actor="t"))
    assert commit.warning and "events 3..3 were appended without the ledger key" in \
        commit.warning
    report = writer.ledger.verify()  # with the key: a failure (review A #3), adopt once
    assert not report.ok and report.first_bad_seq == 3
    assert "events 3..4 are not vouched" in (report.problem or "")
    adopting = writer.ledger.verify(adopting=True)
    assert adopting.ok and any("events 3..4 are not vouched" in n for n in adopting.notes)


def test_sign_head_adopts_only_after_the_full_verify(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    store = store_at(db)
    bump(store, 3)
    fpr = store.signing_key_fingerprint()
    forget(store)
    sql(db, ("DELETE FROM ledger_meta WHERE key IN (?, ?)", (HEAD_SIGNATURE, HEAD_MAC)))
    # a plain checkpoint request does not adopt
    refused = invoke(capsys, db, "sign-head")
    assert refused.exit_code == 3 and "sign-head --adopt" in refused.output
    with pytest.raises(VerificationError):
        SqliteConfigStore(db).ledger.sign_head()
    # a log that does not verify is not adopted
    conn = apsw.Connection(str(db))
    conn.execute("INSERT INTO ledger_secrets (ref, sealed, created_seq) VALUES ('ab', x'00', 2)")
    conn.close()
    bad = invoke(capsys, db, "sign-head", "--adopt")
    assert bad.exit_code == 3 and "not signing" in bad.output
    assert HEAD_SIGNATURE not in meta(db)
    sql(db, ("DELETE FROM ledger_secrets WHERE ref = 'ab'", ()))
    adopted = invoke(capsys, db, "sign-head", "--adopt")
    assert adopted.exit_code == 0 and "signed the head, seq 3" in adopted.output
    assert invoke(capsys, db, "verify", "--expect-key", fpr).exit_code == 0
    # from here on, writers vouch again
    writer = store_at(db)
    bump(writer)
    assert meta(db)[HEAD_MAC].startswith("v1 4 ")
    assert writer.ledger.verify(expect_key=fpr).ok


def test_a_ledger_signed_the_old_way_is_read_and_built_on(tmp_path, capsys):
    """Before checkpoints every append signed the head and there was no head MAC."""
    db = tmp_path / "moltis.db"
    store = store_at(db)
    bump(store, 3)
    keys = store.ledger.vault.integrity()
    head = store.ledger.backend.head()
    store.ledger.close()
    assert keys is not None
    sql(db, ("DELETE FROM ledger_meta WHERE key = ?", (HEAD_MAC,)),
        ("UPDATE ledger_meta SET value = ? WHERE key = ?",
         (keys.sign_head(head.seq, head.hash).encode(), HEAD_SIGNATURE)))
    old = SqliteConfigStore(db).ledger.verify(expect_key=keys.fingerprint)
    assert old.ok and old.signed_seq == 3 and old.mac_seq is None
    writer = store_at(db)
    bump(writer)
    abandon(writer)
    assert meta(db)[HEAD_MAC].startswith("v1 4 ")
    assert SqliteConfigStore(db).ledger.verify(expect_key=keys.fingerprint).ok


def test_verify_json_and_output_name_the_checkpoint_and_the_mac(tmp_path, capsys):
    import json

    db = tmp_path / "moltis.db"
    store = store_at(db, every=4)
    bump(store, 6)
    abandon(store)
    out = invoke(capsys, db, "--json", "verify")
    doc = json.loads(out.output[out.output.index("{"):out.output.rindex("}") + 1])
    assert (doc["signed_seq"], doc["mac_seq"]) == (5, 6)
    text = invoke(capsys, db, "verify")
    assert "(signed head: seq 5; head MAC: seq 6)" in text.output


def test_a_key_rotation_vouches_again_only_for_a_vouched_head(tmp_path):
    db = tmp_path / "moltis.db"
    store = store_at(db)
    bump(store, 2)
    forget(store)
    sql(db, ("DELETE FROM ledger_meta WHERE key IN (?, ?)", (HEAD_SIGNATURE, HEAD_MAC)))
    unvouched = store_at(db)
    # a keyed ledger with events and no MAC row is refused by a keyed open
    # (tests/test_head_mac_gaps.py): a rotation does not vouch for it either
    with pytest.raises(VerificationError, match="no head MAC row"):
        unvouched.ledger.rotate_key(os.urandom(32), actor="t", reason="rotate")
    assert HEAD_SIGNATURE not in meta(db) and HEAD_MAC not in meta(db)
    assert SqliteConfigStore(db).ledger.backend.head().seq == 2
