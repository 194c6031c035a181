"""Export: the state at a point as plain `moltis.toml` + `provider_keys.json` (secrets
masked unless revealed), written where no live config is replaced. Bundles (the whole
log) are `ledger.ops.bundle`'s."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tomlkit

from ledger.core.document import leaves
from ledger.core.secret_refs import refs_in
from ledger.core.wiring import WIRING
from ledger.engine.ledger import Ledger
from ledger.errors import (
    LedgerError,
)
from ledger.files.dirs import CONFIG_FILE_NAMES, KEYS_FILE_NAME, ensure_private_dir
from ledger.files.safe_io import check_directory, read_regular, write_private
from ledger.ops.display import display_doc
from ledger.stores.config_file import parse_config

MASKED_HEADER = "secrets masked"


@dataclass
class ExportFiles:
    config_name: str
    config_text: str
    keys_text: str
    revealed: bool


def export_documents(ledger: Ledger, seq: int, *, fmt: Literal["toml", "json"] = "toml",
                     reveal: bool = False, file_backend: bool = False) -> ExportFiles:
    """moltis.toml and provider_keys.json as of `seq`: the way back to the file store.
    Secrets are mask placeholders unless `reveal` (an importer reads the placeholders as
    "withheld", so a masked export re-imports to the same masked view). With
    `file_backend`, the config says `[config] backend = "file"`: files written out are
    the file store, and a gateway started on them must not look for the ledger."""
    state = ledger.state_at(seq)
    config = display_doc(state.config, ledger.vault, reveal=reveal)
    if file_backend:
        section = config.get("config")
        config["config"] = {**(section if isinstance(section, dict) else {}),
                            "backend": "file"}
    keys = display_doc(state.keys, ledger.vault, reveal=reveal)
    head = ledger.event(seq)
    when = head.time.isoformat(timespec="seconds") if head else "the empty ledger"
    if fmt == "json":
        config_text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        name = "moltis.json"
    else:
        header = tomlkit.document()
        header.add(tomlkit.comment(f"Exported by moltis-ledger from seq {seq} ({when}); "
                                   + ("secrets REVEALED" if reveal else MASKED_HEADER)))
        config_text = tomlkit.dumps(header) + "\n" + tomlkit.dumps(config)
        name = "moltis.toml"
    keys_text = json.dumps(keys, indent=2, ensure_ascii=False) + "\n"
    return ExportFiles(name, config_text, keys_text, reveal)


def holds_secrets(ledger: Ledger, seq: int) -> bool:
    """Whether the state at `seq` has any stored secret (a masked export would hold a
    placeholder)."""
    state = ledger.state_at(seq)
    return any(any(refs_in(v)) for doc in (state.config, state.keys) for _p, v in leaves(doc))


def is_config_home(directory: Path, config_home: Path) -> bool:
    """Whether `directory` is the config directory in use (links resolved)."""
    try:
        return directory.resolve() == config_home.resolve()
    except OSError:
        return False


def live_config_in(directory: Path, config_home: Path) -> Path | None:
    """The live config in `directory`, if it holds one: the config directory in use,
    or Moltis's files that are not a masked export of ours."""
    if is_config_home(directory, config_home):
        return directory
    for name in (*CONFIG_FILE_NAMES, KEYS_FILE_NAME):
        path = directory / name
        try:
            data = read_regular(path)
        except FileNotFoundError:
            continue
        except (OSError, LedgerError):
            return path  # cannot tell it is an export of ours: treat it as live
        head = data[:4096]
        if MASKED_HEADER.encode() in head:
            continue  # an earlier masked export of ours: not what a gateway runs on
        if b"<secret fp:" in head and not _wired(path, data):
            continue  # masked, with no [config] (an export has none): ours too
        return path
    return None


def _wired(path: Path, data: bytes) -> bool:
    """Whether a config file names the store a gateway runs on (`[config]`): `migrate`
    leaves its live files masked too, and an export never writes `[config]` (review
    r15: a masked export replaced a migrated gateway's moltis.toml). A file that does
    not parse counts as wired (cannot tell: live)."""
    if path.name == KEYS_FILE_NAME:
        return False
    try:
        doc = parse_config(path, data)
    except LedgerError:
        return True
    return bool(doc.get(WIRING))


def write_export(files: ExportFiles, directory: Path) -> list[Path]:
    """Write the export files (mode 0600, directory 0700) atomically. A directory
    others could plant links in is refused, and a link already at a file's name is
    replaced, never followed (UnsafePathError names the path and the reason)."""
    check_directory(directory)
    ensure_private_dir(directory)
    written = []
    for name, text in ((files.config_name, files.config_text),
                       ("provider_keys.json", files.keys_text)):
        path = directory / name
        write_private(path, text.encode("utf-8"))
        written.append(path)
    return written
