"""Ledger backups whose `key_check` row was deleted (closing note 5, "Noticed"): the
re-seal of a key rotation and `restore` decided "never held a secret" from that one
row's absence, which anyone who can write the backup file can cause. They now decide
from proof (ledger.engine.key_proof, as the open does): a backup whose own rows open
with the key had its row deleted, one with sealed secrets that open with no key at
hand is another key's, and only a backup with neither counts as never keyed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.operator import cli

PROVIDER_KEY = "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1w"


def _delete_rows(db: Path, *meta_keys: str, snapshots: bool = False) -> None:
    """Delete these ledger_meta rows (and every snapshot) from the file, as anyone who
    can write it could."""
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"DELETE FROM ledger_meta WHERE key IN ({','.join('?' * len(meta_keys))})",
                     meta_keys)
        if snapshots:
            conn.execute("DELETE FROM ledger_snapshots")
        conn.commit()
    finally:
        conn.close()


def _delete_key_check(db: Path) -> None:
    _delete_rows(db, "key_check")


def _keyed_backup(capsys, tmp_path: Path) -> Path:
    cli(capsys, "set", "providers.openai.api_key", PROVIDER_KEY)
    cli(capsys, "backup")
    return next((tmp_path / "data" / "backups").glob("ledger-*.db"))


def test_a_rotation_does_not_skip_a_backup_whose_key_check_row_was_deleted(
        capsys, key_file, tmp_path):
    """Skipped as "never held a secret", the backup stayed sealed under the old key
    (gone after the rotation) with nothing said. Its sealed secret opens with the old
    key, so the row was deleted: it is counted as not re-sealed, named at -v, and left
    as it is (re-keying it would write a key check over the tampering)."""
    backup = _keyed_backup(capsys, tmp_path)
    _delete_key_check(backup)
    tampered = backup.read_bytes()
    out, err = cli(capsys, "-v", "key", "rotate")
    assert "1 sealed backup file(s) could not be re-sealed" in err, (out, err)
    assert str(backup) in err and "key_check" in err, err
    assert backup.read_bytes() == tampered


def test_a_rotation_still_skips_a_backup_with_nothing_a_key_wrote(capsys, key_file, tmp_path):
    """No key check, head MAC, signature or snapshot and no sealed secret: nothing
    tells it from a ledger never keyed, and it is skipped as before (not counted)."""
    cli(capsys, "set", "server.port", "8003")
    cli(capsys, "backup")
    backup = next((tmp_path / "data" / "backups").glob("ledger-*.db"))
    _delete_rows(backup, "key_check", "fp_key", "head_mac", "head_signature", snapshots=True)
    unkeyed = backup.read_bytes()
    out, err = cli(capsys, "key", "rotate")
    assert "could not be re-sealed" not in err and "ledger backup" not in out, (out, err)
    assert backup.read_bytes() == unkeyed


def test_a_rotation_counts_a_backup_of_secrets_no_key_opens(capsys, key_file, tmp_path):
    """Sealed secrets and no key check, and neither key opens them (another key's,
    or rows a forger added): counted as not re-sealed, not skipped as never keyed."""
    outside = tmp_path / "elsewhere" / "ledger.db"
    outside.parent.mkdir(mode=0o700)
    cli(capsys, "set", "providers.openai.api_key", PROVIDER_KEY)
    cli(capsys, "backup", "-o", str(outside))
    cli(capsys, "key", "rotate")
    _delete_rows(outside, "key_check", "head_mac", "head_signature", snapshots=True)
    moved = tmp_path / "data" / "backups" / "ledger-20260101T000000.000000Z.db"
    moved.parent.mkdir(mode=0o700)
    outside.rename(moved)
    foreign = moved.read_bytes()
    out, err = cli(capsys, "-v", "key", "rotate")
    assert "1 sealed backup file(s) could not be re-sealed" in err, (out, err)
    assert str(moved) in err and "none of them opens" in err, err
    assert moved.read_bytes() == foreign


def test_restore_refuses_a_backup_whose_key_check_row_was_deleted(capsys, key_file, tmp_path):
    """Restored, the live ledger would have no key check while its secrets open with
    the key: refused before anything is replaced, as tampering (exit 3)."""
    backup = _keyed_backup(capsys, tmp_path)
    _delete_key_check(backup)
    cli(capsys, "set", "server.port", "8004")
    _, err = cli(capsys, "restore", str(backup), "--force", code=3)
    assert str(backup) in err and "key_check" in err and "nothing was restored" in err, err
    assert "8004" in cli(capsys, "get", "server.port")[0]


def test_restore_refuses_another_keys_backup_without_a_key_check_row(
        capsys, key_file, tmp_path):
    """A backup under a key since rotated away, its key check row deleted: its secrets
    would open with nothing here. Refused as another key's, naming the key it needs."""
    outside = tmp_path / "elsewhere" / "ledger.db"
    outside.parent.mkdir(mode=0o700)
    cli(capsys, "set", "providers.openai.api_key", PROVIDER_KEY)
    cli(capsys, "backup", "-o", str(outside))
    cli(capsys, "key", "rotate")
    _delete_key_check(outside)
    cli(capsys, "set", "server.port", "8005")
    _, err = cli(capsys, "restore", str(outside), "--force", code=1)
    assert str(outside) in err and "sealed with another ledger key" in err, err
    assert "8005" in cli(capsys, "get", "server.port")[0]
