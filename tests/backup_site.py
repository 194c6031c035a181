"""The set-up of the migration-backup reuse tests (tests/test_backup_reuse.py and
tests/test_backup_reuse_content.py): a config dir with a secret-bearing moltis.toml and
provider_keys.json, a data dir, a ledger under a given key that imported them (no
backup of its own), and a real backup made (and MAC'd) by a ledger."""

from __future__ import annotations

import json
from pathlib import Path

from ledger.engine.ledger import Ledger
from ledger.engine.vault import KeySource
from ledger.ops.migrate import backup_files, migrate
from ledger.ops.open_store import open_ledger

SECRET = "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1w"
TOML = f'[server]\nport = 13131\n\n[providers.openai]\napi_key = "{SECRET}"\n'
KEYS = {"openai": {"apiKey": "sk-openai-operator-0002"}}


def site(root: Path, toml: str = TOML, keys: object = KEYS) -> tuple[Path, Path, Path]:
    """(moltis.toml, provider_keys.json, data dir) under `root`."""
    config_dir, data_dir = root / "config", root / "data"
    config_dir.mkdir(parents=True)
    data_dir.mkdir()
    (config_dir / "moltis.toml").write_text(toml, encoding="utf-8")
    (config_dir / "provider_keys.json").write_text(json.dumps(keys), encoding="utf-8")
    return config_dir / "moltis.toml", config_dir / "provider_keys.json", data_dir


def imported(root: Path, key: bytes, toml: str = TOML, keys: object = KEYS, *,
             db: str = "l.db") -> tuple[Ledger, Path, Path, Path]:
    """(ledger, moltis.toml, provider_keys.json, data dir): the site migrated into the
    ledger `root/db` under `key`, without a backup."""
    ledger = open_ledger(str(root / db), keys=KeySource(key=key)).ledger
    config, keys_file, data = site(root, toml, keys)
    migrate(ledger, config_file=config, keys_file=keys_file, data_dir=data, backup=False)
    return ledger, config, keys_file, data


def backup(ledger: Ledger, files: list[Path], data: Path) -> Path:
    """A real backup of `files` in `data`, sealed and MAC'd by `ledger`."""
    return backup_files(files, data, seal=ledger.vault.seal_file,
                        content_print=lambda d: ledger.vault.fingerprint(d.hex()),
                        manifest_mac=ledger.vault.manifest_mac)
