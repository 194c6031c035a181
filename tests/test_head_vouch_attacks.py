"""Issue 13, review A (round 2) findings 1-4: what an attacker who can write the data
dir (not the key dir) does to the head MAC and the checkpoint signatures. A copy of the
database put back (replay), a restored or imported history nobody vouched for, the
vouching rows deleted from a re-chained log, and a forged MAC claim over a window
longer than any checkpoint interval. Real SQLite files, the CLI in-process through its
real entry point (tests.test_integrity.invoke)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ledger import SqliteConfigStore
from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE
from ledger.engine.head_mark import MARK_NAME
from ledger.engine.integrity_keys import CHECKPOINT_EVERY, HeadMac
from ledger.errors import VerificationError
from tests.conftest import run
from tests.test_head_vouch import abandon, bump, keyless, meta, rechain, sql, store_at
from tests.test_integrity import invoke


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A private config dir (where the key file and the head mark beside it live)."""
    config = Path(os.environ["MOLTIS_CONFIG_DIR"])
    config.mkdir(mode=0o700, parents=True, exist_ok=True)
    return tmp_path / "moltis.db"


def verify_json(capsys, db: Path, *args: str) -> dict[str, object]:
    result = invoke(capsys, db, "--json", "verify", *args)
    doc, _ = json.JSONDecoder().raw_decode(result.output[result.output.index("{"):])
    assert isinstance(doc, dict)
    return doc


def put_back(copy: Path, db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, db)


# -- 1: an older copy of the database put back ------------------------------------------

def test_a_replayed_older_ledger_file_fails_pinned_verify(site, tmp_path, capsys):
    """Review A #1. The old copy carries a valid old MAC and signature pair: only the
    head mark beside the key, raised by every key holder's checkpoint, tells."""
    db = site
    assert invoke(capsys, db, "set", "server.port", "8001").exit_code == 0
    old = tmp_path / "old.db"
    shutil.copyfile(db, old)
    assert invoke(capsys, db, "set", "server.port", "8002").exit_code == 0
    assert invoke(capsys, db, "set", "server.port", "8003").exit_code == 0
    fpr = str(verify_json(capsys, db)["key_fingerprint"])
    assert (Path(os.environ["MOLTIS_CONFIG_DIR"]) / MARK_NAME).exists()
    put_back(old, db)
    pinned = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert pinned.exit_code == 3, pinned.output
    assert "older than one this key has seen" in pinned.output
    assert "event 3 of this ledger was already written" in pinned.output
    served = invoke(capsys, db, "get", "server.port")
    assert served.exit_code == 3 and "8001" not in served.output.split("head mark")[0]
    assert "sign-head --adopt" in served.output and "restore" in served.output
    # the operator's explicit act: accept the older ledger; then it is served again
    adopted = invoke(capsys, db, "sign-head", "--adopt")
    assert adopted.exit_code == 0, adopted.output
    assert invoke(capsys, db, "verify", "--expect-key", fpr).exit_code == 0
    assert invoke(capsys, db, "get", "server.port").output.splitlines()[0] == "8001"


def test_a_same_length_rewrite_under_the_mark_fails_even_with_its_signature(
        site, tmp_path, capsys):
    """A copy with as many events as the mark but another history (another branch of
    the same ledger, e.g. an old copy written on): the event at the mark's seq differs."""
    db = site
    invoke(capsys, db, "set", "server.port", "8001")
    old = tmp_path / "old.db"
    shutil.copyfile(db, old)
    invoke(capsys, db, "set", "server.port", "8002")
    put_back(old, db)
    assert invoke(capsys, db, "sign-head", "--adopt").exit_code == 0  # accepted: mark 1
    shutil.copyfile(db, old)
    invoke(capsys, db, "set", "server.port", "8003")  # mark 2 (this branch)
    other = tmp_path / "other.db"
    shutil.copyfile(db, other)
    put_back(old, db)
    invoke(capsys, db, "sign-head", "--adopt")
    invoke(capsys, db, "set", "server.port", "8004")  # mark 2 (the other branch)
    put_back(other, db)  # seq 2 again, but not the event the mark names
    result = invoke(capsys, db, "verify")
    assert result.exit_code == 3, result.output
    assert "not the history this key has seen" in result.output
    assert "is not the event 2 this key vouched for" in result.output


def test_the_head_mark_is_raised_at_checkpoints_not_on_every_append(site, tmp_path):
    """The mark is a file write: at checkpoints (first append, every N, close), so the
    append path keeps issue 16's cost. A library writer without the mirror raises it."""
    db = site
    mark = Path(os.environ["MOLTIS_CONFIG_DIR"]) / MARK_NAME
    store = store_at(db, every=4)
    bump(store, 1)
    first = mark.read_bytes()
    bump(store, 2)  # 2, 3: MAC'd only
    assert mark.read_bytes() == first
    bump(store, 1)  # 4: not due (3 events since 1)
    bump(store, 1)  # 5: a checkpoint
    assert mark.read_bytes() != first
    at_five = mark.read_bytes()
    bump(store, 1)
    store.ledger.close()  # signs 6 on close, and raises the mark
    assert mark.read_bytes() != at_five
    reopened = SqliteConfigStore(db)
    assert reopened.ledger.verify().ok
    reopened.ledger.close()


def test_opening_an_older_copy_with_the_key_is_refused_naming_the_repair(site, tmp_path):
    db = site
    store = store_at(db)
    bump(store, 2)
    store.ledger.close()
    old = tmp_path / "old.db"
    shutil.copyfile(db, old)
    store = store_at(db)
    bump(store, 3)
    store.ledger.close()
    put_back(old, db)
    reader = SqliteConfigStore(db)
    with pytest.raises(VerificationError, match="a copy was put back") as err:
        run(reader.load_raw())
    assert "moltis-ledger restore" in str(err.value) and "sign-head --adopt" in str(err.value)
    reader.ledger.close()
    # without the key nothing here can read the mark: served (verify --expect-key with
    # the key is the check)
    blind = SqliteConfigStore(db, keys=keyless(tmp_path))
    assert run(blind.load_raw()) is not None
    blind.ledger.close()


# -- 3: verify with the ledger key ------------------------------------------------------

def test_verify_with_the_ledger_key_fails_a_rechained_log_whose_vouching_rows_were_deleted(
        site, capsys):
    """Review A #3. With the key at hand, verify knows the signing key: a non-empty
    ledger that nothing vouches for is a forgery or a legacy ledger to adopt once."""
    db = site
    invoke(capsys, db, "set", "server.port", "8001")
    invoke(capsys, db, "set", "server.port", "8002", "--reason", "planned")
    assert invoke(capsys, db, "verify").exit_code == 0
    sql(db, ("DELETE FROM ledger_meta WHERE key IN (?, ?)", (HEAD_SIGNATURE, HEAD_MAC)))
    rechain(db, 2)
    result = invoke(capsys, db, "verify")
    assert result.exit_code == 3, result.output
    assert "no event of this ledger is vouched for" in result.output
    assert "sign-head --adopt" in result.output
    doc = verify_json(capsys, db)
    assert doc["ok"] is False and doc["first_bad_seq"] == 1


def test_verify_with_the_key_fails_events_appended_past_the_vouched_head(
        site, tmp_path, capsys):
    """Events by a writer without the key (or forged) past the vouched head: exit 3,
    naming the first of them; adopted once, after which verify passes."""
    db = site
    store = store_at(db)
    bump(store, 2)
    store.ledger.close()
    blind = store_at(db, keys=keyless(tmp_path))
    bump(blind, 2)
    abandon(blind)
    result = invoke(capsys, db, "verify")
    assert result.exit_code == 3, result.output
    assert "events 3..4 are not vouched for" in result.output
    assert verify_json(capsys, db)["first_bad_seq"] == 3
    assert invoke(capsys, db, "sign-head", "--adopt").exit_code == 0
    assert invoke(capsys, db, "verify").exit_code == 0


# -- 4: a pinned verify without the key ---------------------------------------------------

def test_a_pinned_keyless_verify_fails_a_forged_window_longer_than_any_checkpoint_interval(
        site, tmp_path, capsys, monkeypatch):
    """Review A #4. No key holder leaves more than CHECKPOINT_EVERY events unsigned,
    and a keyless writer leaves the MAC's claim behind: a claim over a longer window is
    forged (its MAC bytes cannot be checked here)."""
    db = site
    invoke(capsys, db, "set", "server.port", "8001")
    fpr = str(verify_json(capsys, db)["key_fingerprint"])
    blind = store_at(db, keys=keyless(tmp_path))
    bump(blind, CHECKPOINT_EVERY + 44)
    abandon(blind)
    head_seq = CHECKPOINT_EVERY + 45
    conn_rows = meta(db)
    assert conn_rows[HEAD_MAC].startswith("v1 1 ")  # the keyless writer left it behind
    import apsw

    conn = apsw.Connection(str(db))
    (head,) = conn.execute("SELECT hash FROM ledger_events WHERE seq = ?",
                           (head_seq,)).fetchone()
    conn.close()
    claim = HeadMac(head_seq, bytes(head), b"\x5a" * 32).encode()
    sql(db, ("UPDATE ledger_meta SET value = ? WHERE key = ?", (claim, HEAD_MAC)))
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(tmp_path / "elsewhere.key"))
    result = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert result.exit_code == 3, result.output
    assert f"more than any holder of the ledger key leaves unsigned ({CHECKPOINT_EVERY})" \
        in result.output


def test_a_pinned_keyless_verify_still_accepts_a_window_a_key_holder_leaves(
        tmp_path, capsys, monkeypatch):
    """The control: a writer with the key killed after CHECKPOINT_EVERY - 1 events past
    its signature leaves a window every legitimate ledger can have."""
    db = tmp_path / "moltis.db"
    store = store_at(db)
    bump(store, CHECKPOINT_EVERY)  # signed at 1, MAC'd up to CHECKPOINT_EVERY
    fpr = store.signing_key_fingerprint()
    abandon(store)
    assert fpr
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(tmp_path / "elsewhere.key"))
    result = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert result.exit_code == 0, result.output
    assert "only the head MAC vouches for them" in result.output


# -- 2: restore, import and copies vouch only for what the source vouched for ------------

def backup_of(capsys, db: Path) -> Path:
    target = db.with_name("backup.db")
    result = invoke(capsys, db, "backup", "-o", str(target))
    assert result.exit_code == 0, result.output
    return target


def test_restore_does_not_launder_a_forged_unsigned_backup(site, capsys):
    """Review A #2. An edited backup (vouching rows deleted, an event re-chained) is
    not laundered: nothing signs it. Since review r8 (finding 4) it is not restored
    either: a keyed backup without its head MAC row is one every read refuses, so the
    live ledger stays in place (exit 3, saying so) and still verifies pinned."""
    db = site
    invoke(capsys, db, "set", "server.port", "8001")
    invoke(capsys, db, "set", "server.port", "8002")
    fpr = str(verify_json(capsys, db)["key_fingerprint"])
    backup = backup_of(capsys, db)
    sql(backup, ("DELETE FROM ledger_meta WHERE key IN (?, ?)", (HEAD_SIGNATURE, HEAD_MAC)))
    rechain(backup, 1)
    restored = invoke(capsys, db, "restore", str(backup), "--force")
    assert restored.exit_code == 3, restored.output
    assert "nothing was restored" in restored.output
    assert HEAD_SIGNATURE not in meta(backup) and HEAD_MAC not in meta(backup)
    assert invoke(capsys, db, "verify", "--expect-key", fpr).exit_code == 0
    assert "8002" in invoke(capsys, db, "get", "server.port").output.splitlines()


def test_a_signed_older_backup_restores_signed_and_is_served(site, capsys):
    """The control: the backup's own signature vouches for its head under this key, so
    the restored ledger is signed, and the head mark moves back to it (restoring is the
    operator's act)."""
    db = site
    invoke(capsys, db, "set", "server.port", "8001")
    fpr = str(verify_json(capsys, db)["key_fingerprint"])
    backup = backup_of(capsys, db)
    invoke(capsys, db, "set", "server.port", "8002")
    restored = invoke(capsys, db, "restore", str(backup), "--force")
    assert restored.exit_code == 0, restored.output
    assert invoke(capsys, db, "verify", "--expect-key", fpr).exit_code == 0
    assert invoke(capsys, db, "get", "server.port").output.splitlines()[0] == "8001"


def test_a_bundle_carries_the_head_signature_and_an_unsigned_one_is_not_laundered(
        site, tmp_path, capsys):
    db = site
    invoke(capsys, db, "set", "server.port", "8001")
    invoke(capsys, db, "set", "server.port", "8002")
    fpr = str(verify_json(capsys, db)["key_fingerprint"])
    bundle = tmp_path / "ledger.bundle"
    assert invoke(capsys, db, "bundle", "-o", str(bundle)).exit_code == 0
    lines = bundle.read_text().splitlines()
    assert any(HEAD_SIGNATURE in json.loads(line).get("meta", {}) for line in lines)
    copy = tmp_path / "copy.db"
    imported = invoke(capsys, copy, "import-bundle", str(bundle))
    assert imported.exit_code == 0, imported.output
    assert invoke(capsys, copy, "verify", "--expect-key", fpr).exit_code == 0
    # the same bundle without its vouching line (a bundle from before, or edited)
    bare = tmp_path / "bare.bundle"
    bare.write_text("".join(f"{line}\n" for line in lines if '"meta"' not in line))
    other = tmp_path / "other.db"
    result = invoke(capsys, other, "import-bundle", str(bare))
    assert result.exit_code == 3 and "sign-head --adopt" in result.output
    assert invoke(capsys, other, "verify", "--expect-key", fpr).exit_code == 3
    assert invoke(capsys, other, "sign-head", "--adopt").exit_code == 0
    assert invoke(capsys, other, "verify", "--expect-key", fpr).exit_code == 0


def test_the_signature_binds_the_ledger_id(tmp_path):
    """Review A #1, second part: a signature made with the same key for another ledger
    (the same seq and hash) does not check here; v1 signatures (no ledger id, written
    before) still do (test_head_vouch: test_a_ledger_signed_the_old_way...)."""
    db = tmp_path / "moltis.db"
    store = store_at(db)
    bump(store, 2)
    keys = store.ledger.vault.integrity()
    head = store.ledger.backend.head()
    fpr = store.signing_key_fingerprint()
    store.ledger.close()
    assert keys is not None and meta(db)[HEAD_SIGNATURE].startswith("v2 ")
    grafted = keys.sign_head(head.seq, head.hash, b"another ledger's id").encode()
    sql(db, ("UPDATE ledger_meta SET value = ? WHERE key = ?", (grafted, HEAD_SIGNATURE)))
    report = SqliteConfigStore(db).ledger.verify(expect_key=fpr)
    assert not report.ok and "does not check" in (report.problem or "")
