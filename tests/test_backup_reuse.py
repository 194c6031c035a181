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
from ledger.ops.migrate import open_backup
from ledger.ops.open_store import open_ledger
from ledger.ops.retire import retire_keys_file
from ledger.ops.strip_secrets import strip_config_secrets
from tests.backup_site import SECRET, backup, imported


def _ledger(tmp_path: Path, name: str) -> tuple[Ledger, bytes]:
    key = os.urandom(32)
    store = open_ledger(str(tmp_path / f"{name}.db"), keys=KeySource(key=key))
    return store.ledger, key


def _imported(tmp_path: Path) -> tuple[Ledger, bytes, Path, Path, Path]:
    key = os.urandom(32)
    ledger, config, keys, data = imported(tmp_path, key, db="a.db")
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
        return backup(other, list(files), elsewhere)
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
        first = backup(ledger, [config, keys], data)
        assert backup(ledger, [config, keys], data) == first  # the same contents: reused
        manifest = json.loads((first / "manifest.json").read_text())
        entry = manifest["files"]["provider_keys.json"]
        (first / entry["stored_as"]).unlink()
        (first / "provider_keys.json").write_text('{"openai": {"apiKey": "sk-attacker"}}')
        entry.update(stored_as="provider_keys.json", sealed=False)
        (first / "manifest.json").write_text(json.dumps(manifest))
        second = backup(ledger, [config, keys], data)
    finally:
        ledger.close()
    assert second != first
    assert open_backup(second, key)["provider_keys.json"] == keys.read_bytes()


def test_a_proven_backup_is_still_reused(tmp_path: Path) -> None:
    """The check refuses only what it cannot prove: migrate's own backup serves."""
    ledger, _, config, keys, data = _imported(tmp_path)
    try:
        folder = backup(ledger, [config, keys], data)
        assert retire_keys_file(ledger, keys, data, folder) == folder
        report = strip_config_secrets(ledger, config, data, folder)
    finally:
        ledger.close()
    assert report is not None and report.backup_dir == folder
    assert [p.name for p in (data / "backups").iterdir()] == [folder.name]
