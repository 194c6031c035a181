"""A keyed reader must not decide "this ledger was never keyed" or "my key is the wrong
key" from rows an attacker without the key can delete or add (the key_check row, the
head MAC row, a decoy ledger_secrets row): what proves the key is what only a key
holder could have written (any sealed secret that opens with it, the sealed
fingerprint key, a head MAC / signature / snapshot MAC that checks with it:
ledger.engine.key_proof). Review findings R1 and R3 of round 5.

Real SQLite files, the real CLI in its own process for what each test is about (the
attacker's edits are plain SQL on the file; the writes before them run the CLI in this
process: tests/migrated_site.py), no mocks.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import apsw
import pytest

from tests.migrated_site import (
    SECRET,
    cli_here,
    cli_process,
    drop_marks,
    site_env,
    truncate_last_event,
)


def _meta(db: Path) -> dict[str, str]:
    con = apsw.Connection(str(db))
    try:
        return {str(k): str(v) for k, v in con.execute("SELECT key, value FROM ledger_meta")}
    finally:
        con.close()


def _events(db: Path) -> int:
    con = apsw.Connection(str(db))
    try:
        return int(con.execute("SELECT count(*) FROM ledger_events").fetchone()[0])
    finally:
        con.close()


ALL_VOUCHING_ROWS = ("head_mac", "head_signature", "key_check", "fp_key")


def test_keyed_get_refuses_a_rolled_back_log_whose_mac_and_key_check_rows_were_deleted(
        tmp_path: Path) -> None:
    """R1: deleting the key_check row with the MAC row (one DELETE) made the keyed
    reader take the ledger for 'never keyed' and serve the rolled-back value, exit 0,
    though the ledger's sealed secret still opens with the held key."""
    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    truncate_last_event(tmp_path / "data" / "moltis.db", ALL_VOUCHING_ROWS)
    drop_marks(tmp_path)
    got = cli_process(env, "get", "server.port")
    assert got.returncode == 3, (got.returncode, got.stdout, got.stderr)
    assert "2000" not in got.stdout
    for said in ("key_check", "moltis-ledger verify", "restore", "sign-head --adopt"):
        assert said in got.stderr, got.stderr
    assert SECRET not in got.stdout + got.stderr


def test_a_keyed_write_does_not_re_key_a_ledger_whose_key_check_was_deleted(
        tmp_path: Path) -> None:
    """R1, the write side: a write by the key holder on such a ledger used to write a
    new key_check row for the held key (re-keying over the tampering); it is refused
    the same way, and nothing is written."""
    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    db = tmp_path / "data" / "moltis.db"
    truncate_last_event(db, ALL_VOUCHING_ROWS)
    drop_marks(tmp_path)
    before = _events(db)
    # the plain write in a process of its own; the secret write in this one
    for cli, args in ((cli_process, ("set", "server.port", "4000")),
                      (cli_here, ("set", "providers.anthropic.api_key", "sk-ant-another-1234"))):
        wrote = cli(env, *args)
        assert wrote.returncode == 3, (args, wrote.stdout, wrote.stderr)
        assert "key_check" in wrote.stderr, wrote.stderr
    assert _events(db) == before
    assert "key_check" not in _meta(db)


def test_a_deleted_key_check_is_proven_by_a_snapshot_mac_when_no_secret_is_sealed(
        tmp_path: Path) -> None:
    """A ledger with no sealed secret: a MAC'd snapshot that checks with the held key
    proves it was keyed (with every vouching row deleted and the tail rolled back)."""
    from ledger.backends.sqlite import SqliteBackend
    from ledger.core.keypaths import parse_path
    from ledger.engine.ledger import Ledger
    from ledger.engine.vault import KeySource

    env = site_env(tmp_path)
    db = tmp_path / "data" / "moltis.db"
    assert cli_here(env, "shred", "--path", "providers.openai.api_key", "--yes").returncode == 0
    ledger = Ledger(SqliteBackend(db), snapshot_every=2,
                    keys=KeySource(key=bytes.fromhex(env["MOLTIS_LEDGER_KEY"]), env={}))
    try:
        for port in (2000, 2001, 2002, 3000):
            ledger.edit({parse_path("server.port"): port}, actor="tester@ci")
    finally:
        ledger.close()
    con = apsw.Connection(str(db))
    try:
        assert con.execute("SELECT count(*) FROM ledger_secrets WHERE sealed IS NOT NULL"
                           ).fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM ledger_snapshots").fetchone()[0] > 0
    finally:
        con.close()
    truncate_last_event(db, ALL_VOUCHING_ROWS)
    drop_marks(tmp_path)
    got = cli_process(env, "get", "server.port")
    assert got.returncode == 3, (got.returncode, got.stdout, got.stderr)
    assert "2002" not in got.stdout
    assert "snapshot" in got.stderr, got.stderr


def test_a_decoy_secret_row_does_not_turn_a_changed_key_check_into_a_wrong_key(
        tmp_path: Path) -> None:
    """R3: key_proof asked only the first sealed secrets row (ORDER BY ref); one decoy
    row whose ref sorts first made the changed key_check look like a wrong key, and the
    key holder read keyless (no head MAC check): the rolled-back value, exit 0."""
    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    db = tmp_path / "data" / "moltis.db"
    truncate_last_event(db, ())
    con = apsw.Connection(str(db))
    con.execute("UPDATE ledger_meta SET value = ? WHERE key = 'key_check'", ("00" * 32,))
    con.execute("UPDATE ledger_meta SET value = ? WHERE key = 'head_mac'",
                (f"v1 1 {'11' * 32} {'22' * 32}",))
    for ref in ("000000000000000000000000", "000000000000000000000001"):
        con.execute("INSERT INTO ledger_secrets (ref, sealed, created_seq) VALUES (?, ?, 1)",
                    (ref, b"\x01" + b"\x00" * 40))
    con.close()
    drop_marks(tmp_path)
    got = cli_process(env, "get", "server.port")
    assert got.returncode == 3, (got.returncode, got.stdout, got.stderr)
    assert "2000" not in got.stdout
    assert "key_check" in got.stderr, got.stderr


def test_a_ledger_never_keyed_is_still_read_with_a_key_held(tmp_path: Path) -> None:
    """The other side: a ledger written without any key (no key_check, no MAC, no
    sealed value) is read as before by a process that holds a key: nothing it has
    opens with that key, so nothing proves it was keyed."""
    env = {k: v for k, v in site_env(tmp_path).items() if k != "MOLTIS_LEDGER_KEY"}
    db = tmp_path / "data" / "moltis.db"
    # a ledger whose writers never had a key: a fresh one, written with the key file
    # unavailable (MOLTIS_LEDGER_KEY_FILE in a directory that cannot be created)
    fresh = tmp_path / "fresh"
    (fresh / "config").mkdir(parents=True)
    (fresh / "data").mkdir()
    keyless = {**env, "MOLTIS_CONFIG_DIR": str(fresh / "config"),
               "MOLTIS_DATA_DIR": str(fresh / "data"),
               "MOLTIS_LEDGER_KEY_FILE": str(tmp_path / "no-such" / "dir" / "ledger.key")}
    (tmp_path / "no-such").write_text("a file, not a directory\n")
    wrote = cli_here(keyless, "set", "server.port", "4242")
    assert wrote.returncode == 0, wrote.stderr
    fresh_db = fresh / "data" / "moltis.db"
    assert "key_check" not in _meta(fresh_db) and "head_mac" not in _meta(fresh_db)
    assert db.exists()
    keyed = {**keyless, "MOLTIS_LEDGER_KEY": secrets.token_hex(32)}
    got = cli_process(keyed, "get", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "4242"), got.stderr


@pytest.mark.slow  # ~5 s: many CLI processes (and 520 events)
def test_sign_head_adopt_writes_a_deleted_key_check_back(tmp_path: Path) -> None:
    """The way out for an intact log whose key_check and MAC rows were lost: refused
    until `sign-head --adopt` (which runs verify first) vouches for it; then reads and
    keyed writes go on, and the key_check row is the held key's again."""
    env = site_env(tmp_path)
    assert cli_process(env, "set", "server.port", "2000").returncode == 0
    db = tmp_path / "data" / "moltis.db"
    check = _meta(db)["key_check"]
    con = apsw.Connection(str(db))
    con.execute("DELETE FROM ledger_meta WHERE key IN ('head_mac', 'head_signature', "
                "'key_check')")
    con.close()
    refused = cli_process(env, "get", "server.port")
    assert refused.returncode == 3, (refused.stdout, refused.stderr)
    adopted = cli_process(env, "sign-head", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert _meta(db)["key_check"] == check
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout.strip(), got.stderr) == (0, "2000", "")
    assert cli_process(env, "set", "server.port", "2001").returncode == 0
    assert cli_process(env, "verify").returncode == 0


def test_a_wrong_key_is_read_as_no_key_but_not_silently(tmp_path: Path) -> None:
    """A key that opens nothing of the ledger is a wrong key: other config stays
    readable (as without a key), but the reader says so, since the head MAC check is
    what it drops (R3: 'should not silently drop the MAC check')."""
    env = site_env(tmp_path)
    assert cli_here(env, "set", "server.port", "2000").returncode == 0
    wrong = {**env, "MOLTIS_LEDGER_KEY": secrets.token_hex(32)}
    got = cli_process(wrong, "get", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "2000"), got.stderr
    assert "does not match" in got.stderr and "head MAC is not checked" in got.stderr
    # and secrets stay out of reach: a secret write is refused (wrong key)
    assert cli_here(wrong, "set", "providers.openai.api_key", "sk-other-0000").returncode != 0


def test_a_running_keyed_writer_does_not_re_key_over_a_deleted_key_check(
        tmp_path: Path) -> None:
    """The write side on its own (no fresh open's head check in between): a long-lived
    keyed ledger object has read the ledger; then the key_check and MAC rows are
    deleted under it. Its next write used to write a new key_check row for its key
    (and append unvouched); it is refused, nothing is appended, no row is written."""
    from ledger.backends.sqlite import SqliteBackend
    from ledger.core.keypaths import parse_path
    from ledger.engine.ledger import Ledger
    from ledger.engine.vault import KeySource
    from ledger.errors import VerificationError

    env = site_env(tmp_path)
    db = tmp_path / "data" / "moltis.db"
    ledger = Ledger(SqliteBackend(db),
                    keys=KeySource(key=bytes.fromhex(env["MOLTIS_LEDGER_KEY"]), env={}))
    try:
        assert ledger.head_state().seq == 1
        con = apsw.Connection(str(db))
        con.execute("DELETE FROM ledger_meta WHERE key IN ('head_mac', 'head_signature', "
                    "'key_check')")
        con.close()
        before = _events(db)
        with pytest.raises(VerificationError, match="key_check is missing"):
            ledger.edit({parse_path("server.port"): 4000}, actor="gateway")
        assert _events(db) == before
        assert "key_check" not in _meta(db) and "head_mac" not in _meta(db)
    finally:
        ledger.close()


@pytest.mark.slow  # ~5 s: many CLI processes (and 520 events)
def test_a_bundle_of_a_ledger_never_keyed_imported_with_a_key_is_adopted_not_re_keyed(
        tmp_path: Path) -> None:
    """A ledger never keyed, long enough for snapshots (the import rebuilds them, sealed
    with the key held), imported by a key holder: the rebuild writes the key_check row
    with the sealed snapshots (as every keyed write does), so the import is not later
    taken for a ledger whose key_check was deleted; nothing vouches for its head until
    the operator's `sign-head --adopt` (the import says so), then reads and writes go
    on."""
    from ledger.backends.sqlite import SqliteBackend
    from ledger.core.keypaths import parse_path
    from ledger.engine.ledger import Ledger
    from ledger.engine.vault import KeySource

    env = {k: v for k, v in site_env(tmp_path).items() if k != "MOLTIS_LEDGER_KEY"}
    (tmp_path / "no-such").write_text("a file, not a directory\n")
    src = tmp_path / "src"
    (src / "config").mkdir(parents=True)
    (src / "data").mkdir()
    nowhere = tmp_path / "no-such" / "dir" / "ledger.key"
    never = Ledger(SqliteBackend(src / "data" / "moltis.db", synchronous="NORMAL"),
                   keys=KeySource(key_file=nowhere, env={}))
    try:
        for port in range(2000, 2520):
            never.edit({parse_path("server.port"): port}, actor="t")
    finally:
        never.close()
    keyless = {**env, "MOLTIS_CONFIG_DIR": str(src / "config"),
               "MOLTIS_DATA_DIR": str(src / "data"), "MOLTIS_LEDGER_KEY_FILE": str(nowhere)}
    assert "key_check" not in _meta(src / "data" / "moltis.db")
    bundle = tmp_path / "never-keyed.bundle"
    made = cli_process(keyless, "bundle", "-o", str(bundle))
    assert made.returncode == 0, made.stderr
    dst = tmp_path / "dst"
    (dst / "config").mkdir(parents=True)
    (dst / "data").mkdir()
    keyed = {**env, "MOLTIS_CONFIG_DIR": str(dst / "config"),
             "MOLTIS_DATA_DIR": str(dst / "data"), "MOLTIS_LEDGER_KEY": secrets.token_hex(32)}
    imported = cli_process(keyed, "import-bundle", str(bundle))
    assert "sign-head --adopt" in imported.stderr, imported.stderr  # nothing vouches yet
    db = dst / "data" / "moltis.db"
    assert "key_check" in _meta(db)  # written with the sealed snapshots
    before = cli_process(keyed, "get", "server.port")
    assert before.returncode == 3 and "is missing" not in before.stderr, before.stderr
    assert cli_process(keyed, "sign-head", "--adopt").returncode == 0
    got = cli_process(keyed, "get", "server.port")
    assert (got.returncode, got.stdout.strip()) == (0, "2519"), got.stderr
    assert cli_process(keyed, "set", "server.port", "4444").returncode == 0
    assert cli_process(keyed, "get", "server.port").stdout.strip() == "4444"
