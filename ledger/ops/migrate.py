"""Migration from the files to the ledger: backup first, then import as events.

`migrate()` copies `moltis.toml` and `provider_keys.json` into a timestamped folder of
the data directory with a manifest of blake3 hashes, then imports both files in one
event with source `import`. It is idempotent and incremental: the ledger remembers a
fingerprint of every leaf it imported from each file, so a second run with unchanged
files appends nothing, a run after a hand edit imports only the paths that changed in
the file, and changes made in the ledger since the last import are never reverted.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blake3 import blake3

from ledger._log import get_logger
from ledger.core.document import Doc, leaves, normalize_document
from ledger.core.events import Change
from ledger.core.keypaths import format_path, parse_path
from ledger.engine.ledger import Commit, Ledger
from ledger.errors import ParseError, SecretKeyError
from ledger.files.dirs import ensure_private_dir
from ledger.files.safe_io import parse_document, read_file
from ledger.schema.introspect import is_secret_path
from ledger.schema.provider_keys import is_key_secret_path
from ledger.typed.changes import Sealer, materialize
from ledger.typed.convert import RawChange
from projections.config_view import ConfigState

__all__ = ["MigrationReport", "migrate", "read_config_file"]

_log = get_logger("ledger.ops.migrate")
META_CONFIG = "import.config.leaves"
META_KEYS = "import.keys.leaves"


@dataclass
class MigrationReport:
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    commit: Commit | None = None
    backup_dir: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)  # what was read, by document

    @property
    def appended(self) -> bool:
        return self.commit is not None and self.commit.appended


def read_config_file(path: Path) -> Doc:
    """moltis.toml (or moltis.json) as a raw document; {} when the file is missing."""
    if path.suffix in (".yaml", ".yml"):
        raise ParseError(f"{path}: YAML configs are not supported; convert it to TOML")
    data = read_file(path)
    if data is None:
        return {}
    fmt = "json" if path.suffix == ".json" else "toml"
    return normalize_document(parse_document(data, str(path), fmt), str(path))


def _leaf_prints(doc: Doc, sealer: Sealer | None, secret: Any) -> dict[str, str]:
    """path -> fingerprint of the value; secrets use the ledger's keyed fingerprint, so
    nothing stored here can be tested against a guessed secret without the key."""
    out: dict[str, str] = {}
    for path, value in leaves(doc):
        if secret(path) and isinstance(value, str) and sealer is not None:
            out[format_path(path)] = "k:" + sealer.fingerprint(value)
        else:
            data = json.dumps(value, sort_keys=True, ensure_ascii=False).encode()
            out[format_path(path)] = "b:" + blake3(data).hexdigest()[:32]
    return out


def _incremental(doc: Doc, previous: Mapping[str, str], now: Mapping[str, str]
                 ) -> list[RawChange]:
    """Only what changed in the file since the last import."""
    changes: list[RawChange] = []
    for text in previous:
        if text not in now:
            changes.append(RawChange("unset", parse_path(text)))
    for path, value in leaves(doc):
        text = format_path(path)
        if previous.get(text) != now[text]:
            changes.append(RawChange("set", path, value))
    return changes


def _keys_doc(path: Path | None) -> Doc | None:
    if path is None or not path.exists():
        return None
    from ledger.stores.key_file import read_keys_file

    return read_keys_file(path)


def backup_files(files: list[Path], data_dir: Path) -> Path:
    """Copy the files into <data_dir>/backups/<UTC time>/ with a blake3 manifest."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = data_dir / "backups" / f"migrate-{stamp}"
    ensure_private_dir(folder.parent)
    folder.mkdir(mode=0o700)
    manifest: dict[str, Any] = {"created": datetime.now(UTC).isoformat(), "files": {}}
    for src in files:
        if not src.exists():
            continue
        data = src.read_bytes()
        dest = folder / src.name
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        shutil.copystat(src, dest)
        os.chmod(dest, 0o600)
        manifest["files"][src.name] = {"source": str(src), "size": len(data),
                                       "blake3": blake3(data).hexdigest()}
    fd = os.open(folder / "manifest.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return folder


def migrate(ledger: Ledger, *, config_file: Path | None, keys_file: Path | None,
            data_dir: Path, dry_run: bool = False, actor: str | None = None,
            reason: str | None = None) -> MigrationReport:
    """Back up, then import the files' changes since the last import (one event)."""
    config_doc = read_config_file(config_file) if config_file is not None else None
    keys_doc = _keys_doc(keys_file)
    report = MigrationReport(dry_run=dry_run)
    if config_doc is not None and config_file is not None and config_file.exists():
        report.sources["config"] = str(config_file)
    if keys_doc is not None and keys_file is not None:
        report.sources["keys"] = str(keys_file)

    meta: dict[str, str] = {}

    def changes_for(state: ConfigState, sealer: Sealer) -> list[Change]:
        out: list[Change] = []
        for name, doc, meta_key, secret, current in (
            ("config", config_doc, META_CONFIG, is_secret_path, state.config),
            ("keys", keys_doc, META_KEYS, is_key_secret_path, state.keys),
        ):
            if doc is None:
                continue
            previous = json.loads(ledger.backend.get_meta(meta_key) or "{}")
            now = _leaf_prints(doc, sealer, secret)
            raw = _incremental(doc, previous, now)
            out += materialize(raw, current, sealer, where=report.sources.get(name, name),
                               doc="config" if name == "config" else "keys", secret=secret)
            meta[meta_key] = json.dumps(now, sort_keys=True)
        return out

    if dry_run:
        class _Preview:
            def seal(self, plaintext: str) -> Any:
                from ledger.core.secret_refs import SecretRef

                return SecretRef(ref="(new)", fp="(new)")

            def fingerprint(self, plaintext: str) -> str:
                try:
                    return ledger.vault.fingerprint(plaintext)
                except SecretKeyError:
                    return "(no key yet)"

        report.changes = changes_for(ledger.head_state(), _Preview())
        return report

    def changes_with_backup(state: ConfigState, sealer: Sealer) -> list[Change]:
        changes = changes_for(state, sealer)
        if changes and report.backup_dir is None:
            files = [p for p in (config_file, keys_file) if p is not None]
            report.backup_dir = backup_files(files, data_dir)  # before anything is imported
        report.changes = changes
        return changes

    report.commit = ledger.apply(changes_with_backup, actor=actor, source="import",
                                 reason=reason or "import of moltis.toml and provider_keys.json",
                                 meta=meta, where=report.sources.get("config", "import"))
    _log.info("migrated", appended=report.appended, seq=report.commit.seq,
              paths=len(report.changes), backup=str(report.backup_dir or ""))
    return report

