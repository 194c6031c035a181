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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, NamedTuple

from blake3 import blake3

from ledger._log import get_logger
from ledger.core.document import MISSING, Doc, get_value, leaves
from ledger.core.events import Change, DocName
from ledger.core.keypaths import KeyPath, format_path, is_prefix, parse_path, stored_path
from ledger.core.wiring import WIRING, without_wiring
from ledger.engine.ledger import Commit, Ledger
from ledger.errors import (
    FileConflictError,
    LedgerError,
    ParseError,
    SecretKeyError,
    VerificationError,
)
from ledger.files.dirs import CONFIG_FILE_NAMES, KEYS_FILE_NAME, ensure_private_dir
from ledger.files.safe_io import check_directory, read_file
from ledger.ops.backup_manifest import (
    ManifestMac,
    holds_as_now,
    mac_matches,
    proven_backup,
    read_manifest,
)
from ledger.ops.file_digest import META_CONFIG, META_FILE_DIGEST, digest_for, read_record
from ledger.ops.import_prints import content_prints, holds_value, keys_file_doc, leaf_prints
from ledger.schema.introspect import is_secret_path
from ledger.schema.provider_keys import is_key_secret_path
from ledger.stores.config_file import parse_config, read_config, read_config_file
from ledger.stores.key_file import META_KEYS
from ledger.typed.changes import Sealer, materialize, materialize_document
from ledger.typed.convert import RawChange, to_typed
from ledger.typed.list_secrets import holds_secret
from projections.config_view import ConfigState

__all__ = ["META_CONFIG", "META_KEYS", "META_SYNC_SEQ", "WIRING", "MigrationReport",
           "key_vault_notices", "migrate", "open_backup",
           "read_config", "read_config_file", "sealed_backup", "without_wiring"]

_log = get_logger("ledger.ops.migrate")
META_SYNC_SEQ = "import.config.seq"  # the head seq when the files were last in step
SEALED_SUFFIX = ".sealed"


@dataclass
class MigrationReport:
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    commit: Commit | None = None
    backup_dir: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)  # what was read, by document
    # what the operator must know about files that were not read (Moltis's key vault),
    # and about records of the last import that could not be trusted
    notices: list[str] = field(default_factory=list)
    # the files whose record of the last import was damaged: recorded as they are now,
    # nothing of them imported, so they are not retired or stripped either (the ledger
    # may lack what they hold: review r27)
    unsure: list[str] = field(default_factory=list)

    @property
    def appended(self) -> bool:
        return self.commit is not None and self.commit.appended


def key_vault_notices(keys_file: Path | None) -> list[str]:
    """What to do about Moltis's encrypted key vault (`provider_keys.json.enc`) next to
    the key file: the ledger cannot open it (its key is in Moltis's vault), so it is
    named rather than silently skipped."""
    if keys_file is None:
        return []
    enc = keys_file.with_name(keys_file.name + ".enc")
    if not enc.exists():
        return []
    if keys_file.exists():
        return [f"{enc} (Moltis's encrypted key vault) is not read: the plaintext "
                f"{keys_file.name} beside it is imported, which Moltis keeps in step. If "
                "the vault holds a key the plaintext file lacks, add it with "
                "`moltis-ledger providers set NAME --api-key -`."]
    return [f"{enc} (Moltis's encrypted key vault) is not read, and there is no plaintext "
            f"{keys_file.name}: no provider keys come from it. Unlock the vault in Moltis "
            f"and re-save the keys (Moltis then writes {keys_file.name}) and run migrate "
            "again, or add each key with `moltis-ledger providers set NAME --api-key -`."]


class _LastImport(NamedTuple):
    prints: dict[str, str]  # of the file as last imported
    unrecorded: bool  # no record, though files were imported before: check conflicts
    damaged: bool  # a record that is not prints: the file as it is now is recorded


def _last_import(ledger: Ledger, report: MigrationReport, where: str, meta_key: str,
                 now: dict[str, str], anyway: bool) -> _LastImport:
    """The prints of the file `where` as last imported. With no record of them though
    files were imported before (a row deleted, or a file that appeared since), the
    file's keys are all new, so the ledger's own changes since that import are kept as
    conflicts (review r27). A damaged record cannot tell the file's changes from the
    ledger's, and the whole file taken as changed would revert every value set in the
    ledger since (review r26): `now` itself is taken (the file as it is is recorded,
    nothing imported) and the file noted in `report.unsure`. `anyway`: a backend switch
    (the whole file) or a hand edit's own conflict rule."""
    stored, damaged = read_record(ledger, meta_key)
    if stored is not None or anyway:
        return _LastImport(stored or {}, False, False)
    if not damaged:
        return _LastImport({}, ledger.backend.get_meta(META_SYNC_SEQ) is not None, False)
    if where not in report.unsure:
        report.unsure.append(where)
        report.notices.append(_damaged_record_notice(where, meta_key, report.dry_run))
    return _LastImport(now, False, True)


def _damaged_record_notice(where: str, meta_key: str, dry_run: bool) -> str:
    done = ("would be recorded as in step and nothing of it imported" if dry_run else
            "is recorded as in step and nothing of it was imported")
    return (f"the ledger's record of {where} as last imported (meta row {meta_key}) is "
            f"damaged: the file as it is now {done}, so no value set in the ledger is "
            "reverted; the file is kept as it is. Compare it with `moltis-ledger export` "
            "and set what differs, if it was edited since")


def _incremental(doc: Doc, previous: Mapping[str, str], now: Mapping[str, str],
                 current: Doc) -> list[RawChange]:
    """Only what changed in the file since the last import, as the operator did it: a
    key removed is an unset of that key, and a table removed altogether (no header
    left in the file) is one unset of that table, once what the ledger holds under it
    is only what the file had (a key the ledger added since stays, in its table)."""
    removed = [parse_path(text) for text in previous if text not in now]
    gone = set(removed)
    tables: list[KeyPath] = []
    for path in removed:
        top: KeyPath | None = None
        for i in range(len(path) - 1, 0, -1):
            table = path[:i]
            if get_value(doc, table) is not MISSING:
                break  # the file still has this table (perhaps just its header)
            held = get_value(current, table)
            if not isinstance(held, dict) or not all(
                    leaf in gone for leaf in ((*table, *sub) for sub, _ in leaves(held))):
                break  # the ledger holds more here than the file took away
            top = table
        if top is not None and not any(is_prefix(t, top) for t in tables):
            tables = [t for t in tables if not is_prefix(top, t)] + [top]
    changes = [RawChange("unset", path) for path in removed
               if not any(is_prefix(t, path) for t in tables)]
    changes += [RawChange("unset", table) for table in tables]
    for path, value in leaves(doc):
        text = stored_path(path)
        if previous.get(text) != now[text]:
            changes.append(RawChange("set", path, value))
    return changes


def _secret_bearing(name: str, data: bytes) -> bool:
    """provider_keys.json always; a config file when it holds a secret-shaped value."""
    if name == KEYS_FILE_NAME or name.endswith(".enc"):
        return True
    try:
        doc = parse_config(Path(name), data)  # as the import reads it
    except LedgerError:
        return True  # cannot tell: seal it
    return any(is_secret_path(path) or holds_secret(path, value) for path, value in leaves(doc))


def _existing_backup(root: Path, content: str,
                     manifest_mac: ManifestMac | None) -> Path | None:
    """A backup folder of this ledger that already holds exactly these files (so failed
    boots that retry the import do not pile up copies); only one whose manifest the
    ledger key proves, since its content print is what a folder is trusted by."""
    if manifest_mac is None or not root.is_dir():
        return None
    for folder in sorted(root.glob("migrate-*"), reverse=True):
        manifest = proven_backup(folder, manifest_mac)
        if manifest is not None and manifest.get("content") == content:
            return folder
    return None


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _default_reason(sources: dict[str, str]) -> str:
    """"import of moltis.toml and provider_keys.json", naming only the files read."""
    return "import of " + " and ".join(Path(s).name for s in sources.values()) \
        if sources else "import"


def backup_files(files: list[Path], data_dir: Path, *,
                 seal: Callable[[bytes, str], bytes] | None = None,
                 content_print: Callable[[bytes], str] | None = None,
                 manifest_mac: ManifestMac | None = None) -> Path:
    """Copy the files into <data_dir>/backups/migrate-<UTC time>/ with a manifest.

    Secret-bearing files (provider_keys.json; a config holding a secret) are sealed
    with the ledger key (`seal`) as `<name>.sealed`, never copied in clear. A folder
    that already holds the same contents is reused (`content_print`: a keyed print of
    the contents, so the manifest cannot be used to test a guessed key file)."""
    read = [(src, read_file(src)) for src in files]  # regular files only, size-checked
    present = [(src, data) for src, data in read if data is not None]
    digest = blake3()
    for src, data in present:
        digest.update(src.name.encode() + b"\0" + blake3(data).digest())
    content = (content_print(digest.digest()) if content_print is not None
               else digest.hexdigest())
    root = data_dir / "backups"
    check_directory(root)  # as `backup` does: a folder others could plant files in is not
    found = _existing_backup(root, content, manifest_mac)  # trusted, nor written into
    if found is not None:
        return found
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = root / f"migrate-{stamp}"
    ensure_private_dir(root)
    folder.mkdir(mode=0o700)
    manifest: dict[str, Any] = {"created": datetime.now(UTC).isoformat(), "content": content,
                                "files": {}}
    for src, data in present:
        sealed = seal is not None and _secret_bearing(src.name, data)
        stored = seal(data, src.name) if seal is not None and sealed else data
        dest = folder / (src.name + SEALED_SUFFIX if sealed else src.name)
        _write_new(dest, stored)
        if not sealed:
            shutil.copystat(src, dest)
            os.chmod(dest, 0o600)
        manifest["files"][src.name] = {"source": str(src), "size": len(data),
                                       "stored_as": dest.name, "sealed": sealed,
                                       "blake3": blake3(stored).hexdigest()}
    if manifest_mac is not None:
        manifest["mac"] = manifest_mac(manifest)
    _write_new(folder / "manifest.json",
               (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return folder


def sealed_backup(ledger: Ledger, files: list[Path], data_dir: Path,
                  backup_dir: Path | None = None) -> Path:
    """A migration backup (sealed with the ledger key) holding `files`, before they are
    stripped, retired or replaced: `backup_dir` when its manifest proves it is this
    ledger key's and it holds each of them sealed, as they are now (`holds_as_now`),
    else one `backup_files` makes (or an own one it finds holding the same contents). A
    manifest edited to claim "sealed", another ledger's (another key, or the same key
    and other files), or an older one is never trusted (`ledger.ops.backup_manifest`)."""
    mac = ledger.vault.manifest_mac
    if backup_dir is not None:
        manifest = proven_backup(backup_dir, mac)
        if manifest is not None and all(
                holds_as_now(backup_dir, manifest["files"].get(f.name), f,
                             ledger.vault.master_key(), WIRING)
                for f in files):
            return backup_dir
    return backup_files(files, data_dir, seal=ledger.vault.seal_file,
                        content_print=lambda d: ledger.vault.fingerprint(d.hex()),
                        manifest_mac=mac)


BACKUP_NAMES: Final = (*CONFIG_FILE_NAMES, KEYS_FILE_NAME)


def open_backup(folder: Path, key: bytes) -> dict[str, bytes]:
    """The original files of a migration backup (sealed ones opened with `key`), by name,
    each checked against the manifest. Only the files a backup holds (the config file,
    provider_keys.json) are given back. The manifest's MAC (ledger key) proves the
    backup is the ledger's own; a backup from before that MAC gives back only its
    sealed files (AES-GCM bound to the file name proves those), never a plain one."""
    # lazy: loaded only on this path (CLI start-up)
    from ledger.engine.sealed_files import backup_manifest_mac, open_blob

    manifest, entries = read_manifest(folder)
    mac = manifest.get("mac")
    if mac is not None and not mac_matches(manifest, partial(backup_manifest_mac, key)):
        raise SecretKeyError(f"{folder / 'manifest.json'}: does not open with this ledger "
                             "key (wrong key, or the manifest was edited since the backup); "
                             "nothing was restored")
    out: dict[str, bytes] = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or name not in BACKUP_NAMES:
            raise ParseError(f"{folder}: manifest.json: bad entry {name!r} (a backup holds "
                             f"only {', '.join(BACKUP_NAMES)}); nothing was restored")
        if mac is None and not entry.get("sealed"):
            raise VerificationError(
                f"{folder}: {name} is not sealed and the manifest has no MAC (a backup "
                "from an older version, or an edited one), so nothing proves it is the "
                "ledger's own; nothing was restored. Copy it back by hand if you trust it",
                None)
        stored_as = str(entry.get("stored_as", name))
        if "/" in stored_as or stored_as.startswith("."):
            raise ParseError(f"{folder}: manifest.json: bad file name {stored_as!r}")
        data = read_file(folder / stored_as, "migration backup file")
        if data is None:
            raise ParseError(f"{folder}: {stored_as} is missing")
        if entry.get("blake3") not in (None, blake3(data).hexdigest()):
            raise VerificationError(f"{folder / stored_as}: does not match manifest.json "
                                    "(changed since the backup)", None)
        out[name] = (open_blob(key, data, name, str(folder / stored_as))
                     if entry.get("sealed") else data)
    return out


def _documents(config_file: Path | None, keys_file: Path | None,
               documents: Mapping[str, Doc | None] | None, config_data: bytes | None
               ) -> tuple[Doc | None, bytes | None, Doc | None]:
    """(config document without `[config]`, the bytes it was parsed from, keys
    document): as given, else read from the files."""
    if documents is not None and "config" in documents:
        config_doc = documents["config"]
    elif config_file is not None:
        config_data, config_doc = read_config(config_file)
    else:
        config_doc = None
    if documents is not None and "keys" in documents:
        keys_doc = documents["keys"]
    else:
        keys_doc = keys_file_doc(keys_file)
    if config_doc is not None and WIRING in config_doc:
        # not imported, but a file whose wiring is broken (backend = "mysql") is refused
        # like any invalid file, naming the key
        to_typed({WIRING: config_doc[WIRING]}, None, str(config_file or "config"))
    return (None if config_doc is None else without_wiring(config_doc)), config_data, keys_doc


def migrate(ledger: Ledger, *, config_file: Path | None, keys_file: Path | None,
            data_dir: Path, dry_run: bool = False, actor: str | None = None,
            reason: str | None = None, source: str = "import", backup: bool = True,
            documents: Mapping[str, Doc | None] | None = None,
            refuse_conflicts: bool = False, whole: bool = False,
            config_data: bytes | None = None) -> MigrationReport:
    """Back up, then import the files' changes since the last import (one event).

    `documents` gives already-parsed documents ("config", "keys"; None: that file is
    absent) instead of reading the files, and `config_data` the bytes the config
    document was parsed from (without them no digest is recorded, so the next check
    for a hand edit runs in full). With `refuse_conflicts` (the automatic import
    of a hand edit), a path the file changed that the ledger also changed since the
    last import raises FileConflictError and nothing is imported. With `whole` (a
    backend switch), the ledger is made equal to the files, not only their changes.
    `[config]` (where the configuration lives) is never imported."""
    config_doc, config_data, keys_doc = _documents(config_file, keys_file, documents,
                                                   config_data)
    vault_notices = key_vault_notices(keys_file)
    report = MigrationReport(dry_run=dry_run, notices=list(vault_notices))
    if config_doc is not None and config_file is not None and (
            config_file.exists() or documents is not None):
        report.sources["config"] = str(config_file)
    if keys_doc is not None and keys_file is not None:
        report.sources["keys"] = str(keys_file)

    meta: dict[str, str] = {}

    def changes_for(state: ConfigState, sealer: Sealer) -> list[Change]:
        out: list[Change] = []
        moved = False
        for name, doc, meta_key, secret, current in (
            ("config", config_doc, META_CONFIG, is_secret_path, state.config),
            ("keys", keys_doc, META_KEYS, is_key_secret_path, state.keys),
        ):
            if doc is None:
                continue
            now = leaf_prints(doc, sealer, secret)
            where = report.sources.get(name, name)
            previous, unrecorded, damaged = _last_import(ledger, report, where, meta_key,
                                                         now, whole or refuse_conflicts)
            moved = moved or damaged  # recorded as in step from here on
            if name == "config":
                previous = content_prints(previous)
            raw = _incremental(doc, previous, now, current)
            moved = moved or bool(raw)
            if (refuse_conflicts or unrecorded) and raw:
                _refuse_conflicts(ledger, raw, current, name, where,
                                  by_hand=not unrecorded)
            kind: DocName = "config" if name == "config" else "keys"
            if whole:
                out += _whole(kind, doc, current, sealer, where, secret)
            else:
                out += materialize(raw, current, sealer, where=where, doc=kind, secret=secret)
            meta[meta_key] = json.dumps(now, sort_keys=True)
        if moved or ledger.backend.get_meta(META_SYNC_SEQ) is None:
            # the seq at which the files' content was last taken in (the conflict rule
            # for hand edits looks at the events after it)
            meta[META_SYNC_SEQ] = str(state.seq + 1 if out else state.seq)
        return out

    if dry_run:
        class _Preview:
            def seal(self, plaintext: str) -> Any:
                # lazy: loaded only on this path (CLI start-up)
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
        if changes and backup and report.backup_dir is None:
            sealer.fingerprint("")  # the ledger key exists from here on (created if new)
            files = [p for p in (config_file, keys_file) if p is not None]
            report.backup_dir = backup_files(  # before anything is imported
                files, data_dir, seal=ledger.vault.seal_file,
                content_print=lambda digest: sealer.fingerprint(digest.hex()),
                manifest_mac=ledger.vault.manifest_mac)
        if META_CONFIG in meta and config_file is not None:
            # with the prints, in the same transaction (the key exists by now, if at all)
            meta[META_FILE_DIGEST] = digest_for(ledger, config_file, config_data,
                                                meta[META_CONFIG])
        report.changes = changes
        return changes

    report.commit = ledger.apply(changes_with_backup, actor=actor, source=source,
                                 reason=reason or _default_reason(report.sources),
                                 meta=meta, where=report.sources.get("config", "import"))
    if vault_notices:
        _log.warning("key vault not read", path=str(keys_file) + ".enc")
    _log.info("migrated", appended=report.appended, seq=report.commit.seq,
              paths=len(report.changes), backup=str(report.backup_dir or ""))
    return report


def _whole(kind: DocName, doc: Doc, current: Doc, sealer: Sealer, where: str,
           secret: Any) -> list[Change]:
    """Changes that make the ledger's document equal the file's (a backend switch);
    `[config]` (where the config lives) stays as the ledger has it."""
    if kind == "config":
        doc = {k: v for k, v in doc.items() if k != "config"}
        if "config" in current:
            doc["config"] = current["config"]
    return materialize_document(current, doc, sealer, where, doc=kind, secret=secret)


def _refuse_conflicts(ledger: Ledger, raw: list[RawChange], current: Doc, name: str,
                      where: str, *, by_hand: bool = True) -> None:
    """The rule for hand edits: a key the file changed since the last import, that an
    event after that import also touched, is a conflict unless both now agree.
    `by_hand` False: `migrate` of a file with no record of its last import."""
    since = int(ledger.backend.get_meta(META_SYNC_SEQ) or "0")
    doc = "config" if name == "config" else "keys"
    touched: dict[KeyPath, int] = {}
    for ev in ledger.events(after=since):
        for ch in ev.changes:
            if ch.doc == doc:
                touched[ch.path] = ev.seq
    clashes: list[str] = []
    for rc in raw:
        hits = [seq for path, seq in touched.items() if is_prefix(path, rc.path)
                or is_prefix(rc.path, path)]
        if not hits:
            continue
        now = get_value(current, rc.path)
        agree = (now is MISSING) if rc.op == "unset" else holds_value(ledger, now, rc.value)
        if not agree:
            clashes.append(f"{format_path(rc.path)} (changed in the ledger at seq "
                           f"{max(hits)})")
    if clashes and not by_hand:
        raise FileConflictError(
            f"the ledger has no record of {where} as last imported, and changed these "
            f"key(s) since the files were: {', '.join(clashes)}; the file would revert "
            "them. Nothing was imported. Make the file agree with the ledger "
            "(`moltis-ledger export` shows it), or set the file's values in the ledger "
            "(`moltis-ledger set`), then migrate again")
    if clashes:
        raise FileConflictError(
            f"{where} was edited by hand since the last import, and the ledger changed the "
            f"same key(s) since then: {', '.join(clashes)}. Nothing was imported. Make the "
            "file agree with the ledger (`moltis-ledger export` shows it), or run "
            "`moltis-ledger migrate` to let the file win")
