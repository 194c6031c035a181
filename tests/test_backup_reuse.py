"""A migration backup is reused (by migrate itself, `strip_secrets`, `retire`, `switch`)
only when its manifest proves it is this ledger's own: a manifest read back from disk is
input, so one edited to claim a file is "sealed", or one MAC'd by another ledger's key,
never stands in for the sealed copy of a file that is about to be stripped or removed."""

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
TOML = f'[server]\nport = 13131\n\n[providers.openai]\napi_key = "{SECRET}"\n'
KEYS = {"openai": {"apiKey": "sk-openai-operator-0002"}}


def _ledger(tmp_path: Path, name: str) -> tuple[Ledger, bytes]:
    key = os.urandom(32)
    store = open_ledger(str(tmp_path / f"{name}.db"), keys=KeySource(key=key))
    return store.ledger, key


def _site(tmp_path: Path) -> tuple[Path, Path, Path]:
    config_dir, data_dir = tmp_path / "config", tmp_path / "data"
    config_dir.mkdir()
    data_dir.mkdir()
    (config_dir / "moltis.toml").write_text(TOML, encoding="utf-8")
    (config_dir / "provider_keys.json").write_text(json.dumps(KEYS), encoding="utf-8")
    return config_dir / "moltis.toml", config_dir / "provider_keys.json", data_dir


def _imported(tmp_path: Path) -> tuple[Ledger, bytes, Path, Path, Path]:
    ledger, key = _ledger(tmp_path, "a")
    config, keys, data = _site(tmp_path)
    migrate(ledger, config_file=config, keys_file=keys, data_dir=data, backup=False)
    return ledger, key, config, keys, data


def _forged(data_dir: Path, *names: str) -> Path:
    """A backup folder whose manifest claims each file is sealed (no MAC, no copy)."""
    folder = data_dir / "backups" / "migrate-forged"
    folder.mkdir(parents=True)
    files = {n: {"source": n, "size": 1, "stored_as": n + ".sealed", "sealed": True}
             for n in names}
    (folder / "manifest.json").write_text(json.dumps({"content": "x", "files": files}))
    return folder


def _other_ledgers_backup(tmp_path: Path, *files: Path) -> Path:
    """A real backup of the same files, made (and MAC'd) by another ledger."""
    other, _ = _ledger(tmp_path, "b")
    elsewhere = tmp_path / "other-data"
    elsewhere.mkdir()
    try:
        return backup_files(list(files), elsewhere, seal=other.vault.seal_file,
                            content_print=lambda d: other.vault.fingerprint(d.hex()),
                            manifest_mac=other.vault.manifest_mac)
    finally:
        other.close()


def test_strip_never_trusts_a_manifest_edited_to_claim_sealed(tmp_path: Path) -> None:
    ledger, key, config, _, data = _imported(tmp_path)
    forged = _forged(data, "moltis.toml")
    try:
        report = strip_config_secrets(ledger, config, data, forged)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir not in (None, forged)
    assert SECRET not in config.read_text(encoding="utf-8")
    assert SECRET.encode() in open_backup(report.backup_dir, key)["moltis.toml"]


def test_strip_never_trusts_another_ledgers_backup(tmp_path: Path) -> None:
    ledger, key, config, _, data = _imported(tmp_path)
    foreign = _other_ledgers_backup(tmp_path, config)
    try:
        report = strip_config_secrets(ledger, config, data, foreign)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir not in (None, foreign)
    assert SECRET.encode() in open_backup(report.backup_dir, key)["moltis.toml"]


def test_retire_never_trusts_a_manifest_edited_to_claim_sealed(tmp_path: Path) -> None:
    ledger, key, _, keys, data = _imported(tmp_path)
    original = keys.read_bytes()
    forged = _forged(data, "provider_keys.json")
    try:
        folder = retire_keys_file(ledger, keys, data, forged)
    finally:
        ledger.close()
    assert not keys.exists()  # retired, but only into a backup that holds it
    assert folder is not None and folder != forged
    assert open_backup(folder, key)["provider_keys.json"] == original


def test_retire_never_trusts_another_ledgers_backup(tmp_path: Path) -> None:
    ledger, key, _, keys, data = _imported(tmp_path)
    original = keys.read_bytes()
    foreign = _other_ledgers_backup(tmp_path, keys)
    try:
        folder = retire_keys_file(ledger, keys, data, foreign)
    finally:
        ledger.close()
    assert folder is not None and folder != foreign
    assert open_backup(folder, key)["provider_keys.json"] == original


def test_a_backup_whose_manifest_was_edited_is_not_reused_by_content(tmp_path: Path) -> None:
    """`backup_files` (switch, migrate) reuses a folder holding the same contents; one
    whose sealed copy was swapped for a plain one (the manifest edited to match) is
    not that folder."""
    ledger, key, config, keys, data = _imported(tmp_path)
    try:
        def backup() -> Path:
            return backup_files([config, keys], data, seal=ledger.vault.seal_file,
                                content_print=lambda d: ledger.vault.fingerprint(d.hex()),
                                manifest_mac=ledger.vault.manifest_mac)

        first = backup()
        assert backup() == first  # the same contents: reused
        manifest = json.loads((first / "manifest.json").read_text())
        entry = manifest["files"]["provider_keys.json"]
        (first / entry["stored_as"]).unlink()
        (first / "provider_keys.json").write_text('{"openai": {"apiKey": "sk-attacker"}}')
        entry.update(stored_as="provider_keys.json", sealed=False)
        (first / "manifest.json").write_text(json.dumps(manifest))
        second = backup()
    finally:
        ledger.close()
    assert second != first
    assert open_backup(second, key)["provider_keys.json"] == keys.read_bytes()


def test_a_proven_backup_is_still_reused(tmp_path: Path) -> None:
    """The check refuses only what it cannot prove: migrate's own backup serves."""
    ledger, _, config, keys, data = _imported(tmp_path)
    try:
        folder = backup_files([config, keys], data, seal=ledger.vault.seal_file,
                              content_print=lambda d: ledger.vault.fingerprint(d.hex()),
                              manifest_mac=ledger.vault.manifest_mac)
        assert retire_keys_file(ledger, keys, data, folder) == folder
        report = strip_config_secrets(ledger, config, data, folder)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir == folder
    assert [p.name for p in (data / "backups").iterdir()] == [folder.name]
