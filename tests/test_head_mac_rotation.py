"""The head MAC check of a keyed open (finding 8) and a key rotation by another process.

The state: a process unlocked the ledger key, then another process's `key rotate`
committed (the key check, the fingerprint key and the head MAC now under the new key,
in one transaction), then the first process checks the head MAC. The MAC does not
check with the key it holds, yet nothing was tampered with. The rule: a MAC row that
does not check is followed to a newer key only when the key check row read with it
(one read) names another key than the one held; the key is then read again from its
source (the key file, or the stopped rotation's staged key) and the MAC must check
with that key, whose own key check must match. A forger who writes a MAC row and a
key check for a key of their own gains nothing: the key read again does not match
their key check, and this key opening the ledger's secrets proves the row changed.

The rotation is a real `key rotate` process held at a chosen step (an audit hook in
the worker waits for the test: tests.rotation_crash.held_rotation), never a timing."""

from __future__ import annotations

import os
from pathlib import Path

import apsw
import blake3
import pytest

from ledger import SqliteConfigStore
from ledger.backends.base import HEAD_MAC
from ledger.engine.head_mark import MARK_NAME
from ledger.engine.integrity_keys import IntegrityKeys
from ledger.engine.sealed_files import subkey
from ledger.engine.vault import KeySource
from ledger.errors import VerificationError
from tests.rotation_crash import (
    ALL_SECRETS,
    Site,
    build_site,
    expect_rotation_finished,
    held_rotation,
    rotation_steps,
)
from tests.test_head_vouch import meta, sql
from tests.test_key_handling import named_steps


def _reader(site: Site) -> SqliteConfigStore:
    """A process's store that has unlocked the key (as a keyed open does first) and has
    not yet checked the head."""
    store = SqliteConfigStore(site.data_dir / "moltis.db",
                              keys=KeySource(key_file=site.key_file, env={}))
    assert store.ledger.vault.integrity() is not None
    return store


def _served(store: SqliteConfigStore) -> int:
    try:
        state = store.ledger.head_state()
        assert store.ledger.mac_problem(store.ledger.backend.head()) is None
        opened = {store.ledger.vault.open_secret(ref)
                  for ref in (state.config["providers"]["openai"]["api_key"],)}
        assert opened <= ALL_SECRETS
        return state.seq
    finally:
        store.ledger.close()


def _after_commit() -> int:
    return named_steps(rotation_steps())["right after the commit"]


def _key_of(site: Site) -> bytes:
    return bytes.fromhex(site.key_file.read_text().strip())


def test_readers_that_unlocked_before_a_rotation_serve_its_head(tmp_path: Path) -> None:
    site = build_site(tmp_path / "site")
    before = site.ok("get", "server.port").out
    old_key = _key_of(site)
    during, after = _reader(site), _reader(site)  # both unlocked the old key
    with held_rotation(site, _after_commit()):
        # committed: the MAC is under the new key, which is only in ledger.key.new
        assert _key_of(site) == old_key
        assert site.key_file.with_name("ledger.key.new").exists()
        assert _served(during) > 0
        assert site.ok("get", "server.port").out == before
    # finished: the key file holds the new key; `after` still holds the old one
    assert _key_of(site) != old_key
    assert _served(after) > 0
    assert site.ok("get", "server.port").out == before
    expect_rotation_finished(site)


def test_a_changed_mac_row_during_a_rotation_is_refused(tmp_path: Path) -> None:
    """Following the rotation is no way around the check: the MAC row must check with
    the key the reader follows to."""
    site = build_site(tmp_path / "site")
    reader = _reader(site)
    db = site.data_dir / "moltis.db"
    with held_rotation(site, _after_commit()):
        stored = meta(db)[HEAD_MAC]
        forged = stored[:-4] + ("0000" if not stored.endswith("0000") else "1111")
        sql(db, ("UPDATE ledger_meta SET value = ? WHERE key = ?", (forged, HEAD_MAC)))
        try:
            with pytest.raises(VerificationError, match="head MAC"):
                reader.ledger.head_state()
        finally:
            reader.ledger.close()
        refused = site.cli("get", "server.port")
        assert refused.code == 3 and "head MAC" in refused.err, refused
        sql(db, ("UPDATE ledger_meta SET value = ? WHERE key = ?", (stored, HEAD_MAC)))


def test_a_mac_row_and_key_check_claiming_another_key_are_refused(tmp_path: Path) -> None:
    """What a rotation writes, forged with a key of the attacker's own (the head mark
    deleted too): neither a reader that unlocked before nor a new one serves it."""
    site = build_site(tmp_path / "site")
    db = site.data_dir / "moltis.db"
    (site.key_file.parent / MARK_NAME).unlink()
    reader = _reader(site)
    theirs = os.urandom(32)
    rows = meta(db)
    ledger_id = rows["ledger_id"].encode()
    conn = apsw.Connection(str(db))
    seq, head_hash = next(iter(conn.execute(
        "SELECT seq, hash FROM ledger_events ORDER BY seq DESC LIMIT 1")))
    conn.close()
    check = blake3.blake3(ledger_id, key=subkey(theirs, "key check")).hexdigest()
    mac = IntegrityKeys(theirs).mac_head(ledger_id, seq, bytes(head_hash)).encode()
    sql(db, ("UPDATE ledger_meta SET value = ? WHERE key = 'key_check'", (check,)),
        ("UPDATE ledger_meta SET value = ? WHERE key = ?", (mac, HEAD_MAC)))
    try:
        with pytest.raises(VerificationError, match="key_check"):
            reader.ledger.head_state()
    finally:
        reader.ledger.close()
    refused = site.cli("get", "server.port")
    assert refused.code == 3 and "key_check" in refused.err, refused


def test_a_writer_that_unlocked_before_a_rotation_vouches_under_the_new_key(
        tmp_path: Path) -> None:
    """A gateway that wrote with the old key, then another process rotates: the
    gateway's next append is MAC'd under the new key (the key is read again in the
    write transaction), not left unvouched, and readers serve it."""
    from ledger.ops.keys import rotate_key

    site = build_site(tmp_path / "site")
    db, keys = site.data_dir / "moltis.db", KeySource(key_file=site.key_file, env={})
    gateway = SqliteConfigStore(db, keys=keys)
    gateway.ledger.edit({("server", "port"): 8181}, actor="g", reason="before")
    operator = SqliteConfigStore(db, keys=KeySource(key_file=site.key_file, env={}))
    rotate_key(operator.ledger, reason="rotate")
    operator.ledger.close()
    commit = gateway.ledger.edit({("server", "port"): 8282}, actor="g", reason="after")
    assert commit.warning is None, commit.warning
    assert gateway.ledger.head_problem() is None
    gateway.ledger.close()
    (site.key_file.parent / MARK_NAME).unlink()
    assert _served(_reader(site)) == commit.seq
    got = site.ok("verify")
    assert "unvouched" not in got.out + got.err and "unsigned" not in got.out + got.err, got


def test_a_keyed_get_of_a_rotated_ledger_checks_the_mac_without_cryptography(
        tmp_path: Path) -> None:
    """The head MAC check costs one keyed blake3: unlocking a rotated ledger no longer
    opens its sealed fingerprint key (AES-GCM, cryptography) until a fingerprint is
    needed. Looked at through `sys.modules` of a fresh interpreter, never by time."""
    import json
    import subprocess
    import sys

    from tests.cli_probe import THROUGH_MAIN as PROBE
    from tests.rotation_crash import REPO

    site = build_site(tmp_path / "site")
    site.ok("key", "rotate")
    assert "fp_key" in meta(site.data_dir / "moltis.db")
    # no moltis.toml with a secret in it: comparing one with the ledger (a hand edit?)
    # fingerprints its secret, which does need the fingerprint key
    for name in ("moltis.toml", "provider_keys.json"):
        (site.root / "config" / name).unlink(missing_ok=True)

    def probe() -> tuple[int, set[str], str]:
        proc = subprocess.run([sys.executable, "-c", PROBE, "get", "server.port"],
                              env=site.env(), cwd=REPO, capture_output=True, text=True,
                              check=False, timeout=120)
        *_, last = proc.stdout.strip().splitlines()
        doc = json.loads(last)
        return doc["code"], set(doc["modules"]), proc.stderr

    code, modules, _err = probe()
    assert code == 0 and "cryptography" not in modules
    # the check ran: a changed MAC row is refused by the same command
    db = site.data_dir / "moltis.db"
    stored = meta(db)[HEAD_MAC]
    sql(db, ("UPDATE ledger_meta SET value = ? WHERE key = ?",
             (stored[:-2] + ("00" if not stored.endswith("00") else "11"), HEAD_MAC)))
    (site.key_file.parent / MARK_NAME).unlink()
    code, modules, err = probe()
    assert code == 3 and "head MAC" in err, err
