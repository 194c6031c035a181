"""A backup folder handed to strip/retire (`sealed_backup`) is reused only when it
holds the very files about to be stripped or retired: its manifest MAC proves only
that the ledger key made it, not that it is this ledger's backup of these contents."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ledger.engine.ledger import Ledger
from ledger.engine.vault import KeySource
from ledger.ops.migrate import backup_files, migrate, open_backup
from ledger.ops.open_store import open_ledger
from ledger.ops.retire import retire_keys_file
from ledger.ops.strip_secrets import strip_config_secrets

SECRET = "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1w"
LATER = "sk-Zy9xWv8uTs7rQp6oNm5lKj4iHg3f"
TOML = f'[server]\nport = 13131\n\n[providers.openai]\napi_key = "{SECRET}"\n'
KEYS = {"openai": {"apiKey": "sk-openai-operator-0002"}}


def _site(root: Path, toml: str = TOML, keys: object = KEYS) -> tuple[Path, Path, Path]:
    config_dir, data_dir = root / "config", root / "data"
    config_dir.mkdir(parents=True)
    data_dir.mkdir()
    (config_dir / "moltis.toml").write_text(toml, encoding="utf-8")
    (config_dir / "provider_keys.json").write_text(json.dumps(keys), encoding="utf-8")
    return config_dir / "moltis.toml", config_dir / "provider_keys.json", data_dir


def _imported(root: Path, key: bytes, toml: str = TOML, keys: object = KEYS
              ) -> tuple[Ledger, Path, Path, Path]:
    ledger = open_ledger(str(root / "l.db"), keys=KeySource(key=key)).ledger
    config, keys_file, data = _site(root, toml, keys)
    migrate(ledger, config_file=config, keys_file=keys_file, data_dir=data, backup=False)
    return ledger, config, keys_file, data


def _backup(ledger: Ledger, files: list[Path], data: Path) -> Path:
    return backup_files(files, data, seal=ledger.vault.seal_file,
                        content_print=lambda d: ledger.vault.fingerprint(d.hex()),
                        manifest_mac=ledger.vault.manifest_mac)


def test_strip_never_reuses_a_same_key_backup_of_another_ledger(tmp_path: Path) -> None:
    key = os.urandom(32)  # one key, two installations (the key file copied over)
    other, other_config, _, other_data = _imported(
        tmp_path / "b", key, TOML.replace(SECRET, LATER))
    try:
        foreign = _backup(other, [other_config], other_data)
    finally:
        other.close()
    ledger, config, _, data = _imported(tmp_path / "a", key)
    try:
        report = strip_config_secrets(ledger, config, data, foreign)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir not in (None, foreign)
    assert SECRET.encode() in open_backup(report.backup_dir, key)["moltis.toml"]


def test_strip_never_reuses_an_older_backup_of_this_ledger(tmp_path: Path) -> None:
    key = os.urandom(32)
    ledger, config, keys, data = _imported(tmp_path, key)
    try:
        older = _backup(ledger, [config], data)
        config.write_text(TOML.replace(SECRET, LATER), encoding="utf-8")
        migrate(ledger, config_file=config, keys_file=keys, data_dir=data, backup=False)
        report = strip_config_secrets(ledger, config, data, older)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir not in (None, older)
    assert LATER.encode() in open_backup(report.backup_dir, key)["moltis.toml"]


def test_retire_never_reuses_a_same_key_backup_of_another_ledger(tmp_path: Path) -> None:
    key = os.urandom(32)
    other, _, other_keys, other_data = _imported(
        tmp_path / "b", key, keys={"openai": {"apiKey": "sk-another-site-0003"}})
    try:
        foreign = _backup(other, [other_keys], other_data)
    finally:
        other.close()
    ledger, _, keys, data = _imported(tmp_path / "a", key)
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
    ledger, config, keys, data = _imported(tmp_path, key)
    try:
        folder = _backup(ledger, [config, keys], data)
        with config.open("a", encoding="utf-8") as f:
            f.write('\n[config]\nbackend = "sqlite"\n')
        assert retire_keys_file(ledger, keys, data, folder) == folder
        report = strip_config_secrets(ledger, config, data, folder)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir == folder
    assert [p.name for p in (data / "backups").iterdir()] == [folder.name]
