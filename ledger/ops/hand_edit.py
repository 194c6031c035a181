"""Hand edits of the config file after it was imported: found, imported as `file`
events (actor the file's owner), and the file recorded as in step after this library
wrote it itself. The import itself is `ledger.ops.migrate`'s (with its conflict rule);
the cheap check that runs first is `ledger.ops.file_digest`'s."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ledger.core.document import Doc
from ledger.core.events import Change
from ledger.core.wiring import without_wiring
from ledger.engine.ledger import Ledger
from ledger.errors import SecretKeyError
from ledger.ops.file_digest import (
    META_CONFIG,
    META_FILE_DIGEST,
    digest_for,
    in_step,
    stored_prints,
)
from ledger.ops.import_prints import content_prints, leaf_prints
from ledger.ops.migrate import META_SYNC_SEQ, MigrationReport, migrate, read_config
from ledger.schema.introspect import is_secret_path
from ledger.stores.config_file import parse_config
from ledger.typed.changes import Sealer
from projections.config_view import ConfigState

__all__ = ["file_owner", "file_sync_meta", "import_hand_edit", "pending_hand_edit",
           "record_file_sync"]


def file_owner(path: Path) -> str:
    """The actor of a hand edit: the file's owner, as user@host."""
    import pwd
    import socket

    try:
        uid = path.stat().st_uid
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = f"uid {uid}"
    except OSError:
        user = "unknown"
    return f"{user}@{socket.gethostname() or 'localhost'}"


def import_hand_edit(ledger: Ledger, config_file: Path, *, config_doc: Doc | None = None,
                     config_data: bytes | None = None, data_dir: Path
                     ) -> MigrationReport | None:
    """Import a hand edit of the config file made since the last import (source `file`,
    actor the file's owner), or raise FileConflictError (see `_refuse_conflicts`).
    Nothing to import (never imported, unchanged): None. A file whose content is what
    was imported but whose bytes are not (a comment, the layout, `[config]`) appends no
    event; its digest is recorded, so the next check is cheap again."""
    previous = ledger.backend.get_meta(META_CONFIG)
    prints = stored_prints(ledger)
    if previous is None or prints is None or not config_file.exists():
        return None
    if config_doc is None:
        config_data, config_doc = read_config(config_file)
    doc = without_wiring(config_doc)
    try:
        now = leaf_prints(doc, ledger.vault, is_secret_path)
    except SecretKeyError:
        now = None  # cannot tell a changed secret from an unchanged one: let migrate see
    if now is not None and content_prints(prints) == now:
        _catch_up_digest(ledger, config_file, config_data, previous, now)
        return None
    report = migrate(ledger, config_file=config_file, keys_file=None, data_dir=data_dir,
                     actor=file_owner(config_file), source="file", backup=False,
                     reason=f"hand edit of {config_file}", documents={"config": doc},
                     config_data=config_data, refuse_conflicts=True)
    return report if report.appended else None


def _catch_up_digest(ledger: Ledger, config_file: Path, data: bytes | None, previous: str,
                     now: Mapping[str, str]) -> None:
    """Record the digest of bytes whose content is already imported (no event), unless
    another writer recorded an import meanwhile (then its prints stand)."""
    if data is None or in_step(ledger, config_file, data):
        return
    prints = json.dumps(dict(now), sort_keys=True)
    digest = digest_for(ledger, config_file, data, prints)
    if not digest:
        return  # no ledger key: there is no digest to keep
    meta: dict[str, str] = {}

    def build(_state: ConfigState, _sealer: Sealer) -> list[Change]:
        if ledger.backend.get_meta(META_CONFIG) == previous:  # read in the write transaction
            meta.update({META_CONFIG: prints, META_FILE_DIGEST: digest})
        return []

    ledger.append(build, meta=meta, source="import")


def pending_hand_edit(ledger: Ledger, doc: Doc, previous: Mapping[str, str]) -> bool:
    """Whether the config document differs from what was last imported (without
    writing; a secret that cannot be fingerprinted without the key counts as unknown)."""
    try:
        now = leaf_prints(without_wiring(doc), ledger.vault, is_secret_path)
    except SecretKeyError:
        return False
    return now != content_prints(previous)


def record_file_sync(ledger: Ledger, config_file: Path, doc: Doc | None = None,
                     data: bytes | None = None) -> None:
    """Remember the config file's content as in step with the ledger (after this library
    wrote it: a backend switch, an export to the file store), so it is not taken for a
    hand edit: `data`, the bytes this library wrote, or else the file as it is now. With
    `doc` given, the file's bytes are not known to be that document, so no digest is
    recorded (the next check runs in full)."""
    ledger.append(lambda state, _s: [], meta=file_sync_meta(ledger, config_file, doc, data),
                  source="import")


def file_sync_meta(ledger: Ledger, config_file: Path, doc: Doc | None = None,
                   data: bytes | None = None) -> dict[str, str]:
    """The `import.*` rows `record_file_sync` writes (the same arguments)."""
    if data is not None:
        read = parse_config(config_file, data)
    else:
        data, read = read_config(config_file) if doc is None else (None, doc)
    prints = json.dumps(leaf_prints(without_wiring(read), ledger.vault, is_secret_path),
                        sort_keys=True)
    return {META_CONFIG: prints, META_SYNC_SEQ: str(ledger.head_state().seq),
            META_FILE_DIGEST: digest_for(ledger, config_file, data, prints)}
