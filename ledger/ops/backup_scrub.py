"""`shred` reaches the migration backups: a destroyed secret value must not stay
readable in a sealed backup made with the same ledger key (`unseal-backup` would give
it back). The backup files that hold the value are removed, with their manifest
entries; the value itself is never logged or shown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ledger.core import constant_time
from ledger.engine.sealed_files import backup_manifest_mac, open_blob
from ledger.errors import LedgerError
from ledger.files.safe_io import read_file, write_private

__all__ = ["scrub_backups"]


def _needles(values: Sequence[str]) -> list[bytes]:
    """Each value as it appears in a TOML, YAML or JSON file: as is, and escaped."""
    out: set[bytes] = set()
    for value in values:
        if value:
            out.add(value.encode())
            out.add(json.dumps(value, ensure_ascii=False)[1:-1].encode())
    return sorted(out)


def scrub_backups(data_dir: Path, key: bytes, values: Sequence[str]) -> list[Path]:
    """Remove from every migration backup in `data_dir` the files holding any of
    `values` (sealed files opened with `key`); the paths removed. A manifest the key
    proves is MAC'd again; a scrubbed backup is never reused for a later migration."""
    needles = _needles(values)
    root = data_dir / "backups"
    removed: list[Path] = []
    for folder in sorted(root.glob("migrate-*")) if needles and root.is_dir() else []:
        manifest_path = folder / "manifest.json"
        try:
            manifest = json.loads((read_file(manifest_path) or b"{}").decode("utf-8"))
            entries = manifest["files"]
            if not isinstance(entries, dict):
                continue
        except (LedgerError, ValueError, KeyError, TypeError):
            continue  # not a migration backup
        mac = manifest.get("mac")
        proven = isinstance(mac, str) and constant_time.equal(
            mac, backup_manifest_mac(key, manifest))
        hits: list[tuple[str, Path]] = []
        for name, entry in entries.items():
            stored_as = str(entry.get("stored_as", name)) if isinstance(entry, dict) else ""
            if not stored_as or "/" in stored_as or stored_as.startswith("."):
                continue
            path = folder / stored_as
            try:
                data = read_file(path)
                if data is None:
                    continue
                plain = open_blob(key, data, name, str(path)) if entry.get("sealed") else data
            except LedgerError:
                continue  # another key's backup: this ledger's key cannot reveal it either
            if any(needle in plain for needle in needles):
                hits.append((name, path))
        if not hits:
            continue
        for name, path in hits:
            del entries[name]
            path.unlink(missing_ok=True)
            removed.append(path)
        manifest["content"] = "scrubbed by shred"  # never matches a content print
        if proven:
            manifest["mac"] = backup_manifest_mac(key, manifest)
        write_private(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    return removed
