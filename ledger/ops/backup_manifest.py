"""A migration backup's manifest read back from disk, and its proof: the manifest is
input (anyone who can write the data dir can edit it), so what it says (an entry's
`sealed` flag, the content print a folder is reused by) is trusted only once its MAC
matches the ledger key. The one check `open_backup` (restore) and every reuse of a
backup (`ledger.ops.migrate.sealed_backup`: migrate, strip_secrets, retire, switch)
share. The MAC proves only the key, so a backup handed in for reuse must also hold
the files as they are now (`holds_as_now`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from blake3 import blake3

from ledger.core import constant_time
from ledger.core.document import same_value
from ledger.errors import LedgerError, ParseError
from ledger.files.dirs import CONFIG_FILE_NAMES
from ledger.files.safe_io import read_file
from ledger.stores.config_file import parse_config

__all__ = ["ManifestMac", "holds_as_now", "mac_matches", "proven_backup", "read_manifest"]

ManifestMac = Callable[[Mapping[str, Any]], str]  # the keyed MAC (`Vault.manifest_mac`)


def read_manifest(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, its `files` entries) of the backup in `folder`; ParseError naming the
    folder when it holds no readable manifest."""
    try:
        # size-checked, as every file read back
        raw = read_file(folder / "manifest.json", "backup manifest")
        if raw is None:
            raise ValueError("missing")
        manifest = json.loads(raw)
        entries = manifest["files"]
        if not isinstance(entries, dict):
            raise TypeError("files is not an object")
    except (LedgerError, ValueError, KeyError, TypeError) as err:
        raise ParseError(f"{folder}: not a migration backup (manifest.json: {err})") from None
    return manifest, entries


def mac_matches(manifest: Mapping[str, Any], manifest_mac: ManifestMac) -> bool:
    """Whether the manifest carries a MAC and it is the one this ledger key gives."""
    mac = manifest.get("mac")
    return isinstance(mac, str) and constant_time.equal(mac, manifest_mac(manifest))


def proven_backup(folder: Path, manifest_mac: ManifestMac) -> dict[str, Any] | None:
    """The manifest of `folder` when it proves the folder is this ledger's own backup,
    as it was made: its MAC matches the ledger key (not edited, not another ledger's)
    and every file it lists is there with the hash it lists. None otherwise (unreadable
    too): the caller then makes a backup of its own instead of trusting this one."""
    try:
        manifest, entries = read_manifest(folder)
    except ParseError:
        return None
    if not mac_matches(manifest, manifest_mac):
        return None
    for entry in entries.values():
        stored_as = entry.get("stored_as") if isinstance(entry, dict) else None
        if not isinstance(stored_as, str) or "/" in stored_as or stored_as.startswith("."):
            return None
        try:
            data = read_file(folder / stored_as)
        except LedgerError:  # unreadable, or too large to be one of ours
            return None
        if data is None or entry.get("blake3") != blake3(data).hexdigest():
            return None
    return manifest


def holds_as_now(folder: Path, entry: Any, file: Path, key: bytes, wiring: str) -> bool:
    """Whether the proven backup in `folder` holds `file` sealed (its manifest `entry`)
    with what the file holds now. The manifest's MAC proves only that this ledger key
    wrote it: another installation sharing the key, or an older backup of this one,
    proves it too. So the sealed copy is opened and compared: the same bytes, or (a
    config file) the same document but for its `wiring` table, which CLI `migrate`
    writes between its backup and the strip; whatever a strip or retire then takes
    out of the file is in the copy."""
    if not isinstance(entry, dict) or entry.get("sealed") is not True:
        return False
    # lazy: loaded only on this path (a backup handed in for reuse)
    from ledger.engine.sealed_files import open_blob

    where = folder / str(entry.get("stored_as"))
    try:
        now = read_file(file)
        stored = read_file(where)
        if now is None or stored is None:
            return False
        held = open_blob(key, stored, file.name, str(where))
        if held == now:
            return True
        if file.name not in CONFIG_FILE_NAMES:
            return False
        held_doc, now_doc = parse_config(file, held), parse_config(file, now)
    except LedgerError:  # unreadable, not sealed with this key, or not parseable
        return False
    held_doc.pop(wiring, None)
    now_doc.pop(wiring, None)
    return same_value(held_doc, now_doc)
