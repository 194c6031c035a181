"""Retiring the plaintext provider_keys.json once the ledger holds its keys: the one
rule both `migrate` (CLI) and the gateway's first-start import (`open_store()`) use,
so no plaintext key file stays beside a ledger that holds the same keys sealed."""

from __future__ import annotations

from pathlib import Path

from ledger.engine.ledger import Ledger
from ledger.ops.import_prints import keys_held, keys_prints
from ledger.ops.migrate import sealed_backup

__all__ = ["retire_keys_file"]


def retire_keys_file(ledger: Ledger, keys_file: Path, data_dir: Path,
                     backup_dir: Path | None) -> Path | None:
    """Remove `keys_file` once the ledger holds every value of it and a sealed copy of it
    is in a migration backup (`backup_dir` when its manifest proves it holds one, else a
    new one: `sealed_backup`); the backup folder, or None when the file is kept (absent,
    or not what the ledger holds)."""
    if not keys_file.exists():
        return None
    held = keys_held(ledger)  # what the ledger holds, not its record of the file
    if any(held.get(path) != value for path, value in keys_prints(ledger, keys_file).items()):
        return None  # the ledger does not hold every value of this file: keep it
    folder = sealed_backup(ledger, [keys_file], data_dir, backup_dir)
    keys_file.unlink()
    return folder
