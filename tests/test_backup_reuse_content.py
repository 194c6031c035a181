"""A backup folder handed to strip/retire (`sealed_backup`) is reused only when it
holds the very files about to be stripped or retired: its manifest MAC proves only
that the ledger key made it, not that it is this ledger's backup of these contents."""

from __future__ import annotations

import os
from pathlib import Path

from ledger.ops.migrate import migrate, open_backup
from ledger.ops.retire import retire_keys_file
from ledger.ops.strip_secrets import strip_config_secrets
from tests.backup_site import SECRET, TOML, backup, imported

LATER = "sk-Zy9xWv8uTs7rQp6oNm5lKj4iHg3f"


def test_strip_never_reuses_a_same_key_backup_of_another_ledger(tmp_path: Path) -> None:
    key = os.urandom(32)  # one key, two installations (the key file copied over)
    other, other_config, _, other_data = imported(
        tmp_path / "b", key, TOML.replace(SECRET, LATER))
    try:
        foreign = backup(other, [other_config], other_data)
    finally:
        other.close()
    ledger, config, _, data = imported(tmp_path / "a", key)
    try:
        report = strip_config_secrets(ledger, config, data, foreign)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir not in (None, foreign)
    assert SECRET.encode() in open_backup(report.backup_dir, key)["moltis.toml"]


def test_strip_never_reuses_an_older_backup_of_this_ledger(tmp_path: Path) -> None:
    key = os.urandom(32)
    ledger, config, keys, data = imported(tmp_path, key)
    try:
        older = backup(ledger, [config], data)
        config.write_text(TOML.replace(SECRET, LATER), encoding="utf-8")
        migrate(ledger, config_file=config, keys_file=keys, data_dir=data, backup=False)
        report = strip_config_secrets(ledger, config, data, older)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir not in (None, older)
    assert LATER.encode() in open_backup(report.backup_dir, key)["moltis.toml"]


def test_retire_never_reuses_a_same_key_backup_of_another_ledger(tmp_path: Path) -> None:
    key = os.urandom(32)
    other, _, other_keys, other_data = imported(
        tmp_path / "b", key, keys={"openai": {"apiKey": "sk-another-site-0003"}})
    try:
        foreign = backup(other, [other_keys], other_data)
    finally:
        other.close()
    ledger, _, keys, data = imported(tmp_path / "a", key)
    original = keys.read_bytes()
    try:
        folder = retire_keys_file(ledger, keys, data, foreign)
    finally:
        ledger.close()
    assert folder is not None and folder != foreign
    assert open_backup(folder, key)["provider_keys.json"] == original


def test_migrates_own_backup_serves_after_it_wrote_the_config_wiring(tmp_path: Path) -> None:
    """CLI `migrate` writes `[config]` into the file between its backup and the strip:
    the backup still holds everything the strip takes out, and is reused."""
    key = os.urandom(32)
    ledger, config, keys, data = imported(tmp_path, key)
    try:
        folder = backup(ledger, [config, keys], data)
        with config.open("a", encoding="utf-8") as f:
            f.write('\n[config]\nbackend = "sqlite"\n')
        assert retire_keys_file(ledger, keys, data, folder) == folder
        report = strip_config_secrets(ledger, config, data, folder)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir == folder
    assert [p.name for p in (data / "backups").iterdir()] == [folder.name]
