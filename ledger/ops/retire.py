"""Retiring the plaintext provider_keys.json once the ledger holds its keys: the one
rule both `migrate` (CLI) and the gateway's first-start import (`open_store()`) use,
so no plaintext key file stays beside a ledger that holds the same keys sealed."""

from __future__ import annotations

from pathlib import Path

from ledger.engine.ledger import Ledger
from ledger.ops.file_digest import stored_prints
from ledger.ops.migrate import META_KEYS, keys_prints, sealed_backup

__all__ = ["retire_keys_file"]


def retire_keys_file(ledger: Ledger, keys_file: Path, data_dir: Path,
                     backup_dir: Path | None) -> Path | None:
    """Remove `keys_file` once the ledger holds exactly its keys and a sealed copy of it
    is in a migration backup (`backup_dir` when its manifest proves it holds one, else a
    new one: `sealed_backup`); the backup folder, or None when the file is kept (absent,
    or not what the ledger holds)."""
    if not keys_file.exists():
        return None
    imported = stored_prints(ledger, META_KEYS)
    if imported is None or imported != keys_prints(ledger, keys_file):
        return None  # the ledger does not hold exactly this file: keep it
    folder = sealed_backup(ledger, [keys_file], data_dir, backup_dir)
    keys_file.unlink()
    return folder
