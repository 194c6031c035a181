"""Taking the plaintext secrets out of the config file once the ledger holds them sealed:
the one rule `migrate`, `switch-backend` and the gateway's first-start import use
(like `ledger.ops.retire` for provider_keys.json), so no live moltis.toml keeps in
clear what the ledger seals (and what `shred` destroys).

Each secret value the ledger holds sealed under the same path, with the same keyed
fingerprint, is replaced in place by the ledger's mask placeholder
(`<secret fp:…>`): the key, its comments and the file's layout stay, and the import
rule reads that placeholder back as "the sealed value already held" (no change), so
the stripped file never imports as unsets. A value the ledger does not hold exactly
(changed in the ledger since, or never imported) is left alone. The original file is
first sealed in a migration backup; the stripped file is then recorded as in step
(`record_file_sync`), so it is the baseline later hand edits are measured against.
The gateway never serves an imported file (`open_store()` refuses it), so this
changes nothing it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger._log import get_logger
from ledger.core.document import MISSING, Doc, apply_changes, get_value, leaves, same_value
from ledger.core.events import Change
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import SecretRef, holds_mask, parse_mask
from ledger.core.wiring import WIRING
from ledger.engine.ledger import Ledger
from ledger.errors import LedgerError, StoreError
from ledger.files.documents import config_format
from ledger.files.safe_io import locked, read_file, replace_file
from ledger.ops.hand_edit import record_file_sync
from ledger.ops.migrate import sealed_backup
from ledger.ops.retire import retire_keys_file
from ledger.stores.config_file import parse_config, read_config
from ledger.typed.changes import is_env_reference

_log = get_logger(__name__)

__all__ = ["StripReport", "after_first_import", "strip_config_secrets",
           "strip_hand_edit"]


@dataclass
class StripReport:
    """What was taken out (paths), and the sealed backup holding the original."""

    paths: list[str] = field(default_factory=list)
    backup_dir: Path | None = None


def _masked(value: Any, stored: Any, ledger: Ledger) -> Any:
    """`value` with each plaintext secret the ledger holds sealed as `stored` replaced
    by its mask (recursing through arrays and tables); `value` itself when none is."""
    if isinstance(value, str):
        if (isinstance(stored, SecretRef) and not is_env_reference(value)
                and parse_mask(value) is None
                and ledger.vault.fingerprint(value) == stored.fp):
            return stored.mask()
        return value
    if isinstance(value, list) and isinstance(stored, list) and len(value) == len(stored):
        out = [_masked(v, s, ledger) for v, s in zip(value, stored, strict=True)]
        return value if out == value else out
    if isinstance(value, dict) and isinstance(stored, dict):
        new = {k: _masked(v, stored.get(k, MISSING), ledger) for k, v in value.items()}
        return value if new == value else new
    return value


def _replacements(doc: Doc, ledger: Ledger) -> list[tuple[KeyPath, Any]]:
    held = ledger.head_state().config
    out: list[tuple[KeyPath, Any]] = []
    for path, value in leaves(doc):
        if path[0] == WIRING:
            continue  # [config] is wiring, never imported
        new = _masked(value, get_value(held, path), ledger)
        if new is not value:
            out.append((path, new))
    return out


def _render(config_file: Path, data: bytes, changes: list[Change]) -> bytes:
    """The file's new bytes, edited in its own format (comments and layout kept)."""
    fmt = config_format(config_file)
    text = data.decode("utf-8")
    if fmt == "toml":
        # lazy: tomlkit only when a file is stripped
        from ledger.stores.toml_edit import edit_toml

        return edit_toml(text, changes).encode("utf-8")
    if fmt == "yaml":
        # lazy: ruamel.yaml only for YAML files
        from ledger.stores.yaml_edit import edit_yaml

        return edit_yaml(text, changes).encode("utf-8")
    new, _ = apply_changes(json.loads(text), changes)
    return (json.dumps(new, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def strip_config_secrets(ledger: Ledger, config_file: Path, data_dir: Path,
                         backup_dir: Path | None = None,
                         imported: bytes | None = None) -> StripReport | None:
    """Replace every plaintext secret of `config_file` that the ledger holds sealed by
    its mask (see the module docstring), after sealing the original in a backup; what
    was done, or None when the file holds no such secret.

    An editor saving the file does not take our lock, so (review r17) the file is left
    alone when it is no longer `imported` (the bytes the import just read: a newer save
    is a hand edit, imported and masked on its next read), and is replaced only if it is
    still the file read here once the backup is sealed; the file recorded as in step is
    the one written here, never one read back."""
    if not config_file.exists():
        return None
    with locked(config_file, wait=True):
        data, doc = read_config(config_file)
        if data is None or (imported is not None and data != imported):
            return None
        replacements = _replacements(doc, ledger)
        if not replacements:
            return None
        changes = [Change(op="set", path=path, value=value) for path, value in replacements]
        new = _render(config_file, data, changes)
        try:
            back = parse_config(config_file, new)
        except LedgerError as err:
            raise StoreError(f"{config_file}: internal error: the file without its secrets "
                             f"would not parse ({err}); it was left as it is") from None
        if not same_value(back, apply_changes(doc, changes)[0]):  # copy-on-write: doc stays
            raise StoreError(f"{config_file}: internal error: taking the secrets out would "
                             "also change other values; the file was left as it is")
        folder = sealed_backup(ledger, [config_file], data_dir, backup_dir)
        if read_file(config_file) != data:  # saved meanwhile: that edit stands
            _log.info("the config file changed while its secrets were masked; left as "
                      "it is", file=str(config_file))
            return None
        replace_file(config_file, new)
        record_file_sync(ledger, config_file, data=new)  # the new baseline
    return StripReport([format_path(p) for p, _ in replacements], folder)


def after_first_import(ledger: Ledger, config_file: Path, keys_file: Path, data_dir: Path,
                       backup_dir: Path | None, imported: bytes | None) -> None:
    """The gateway's first-start import (`open_store()`), as `migrate` does it: the
    plaintext key file retired, the config file's secrets masked."""
    folder = retire_keys_file(ledger, keys_file, data_dir, backup_dir)
    if folder is not None:
        _log.info("the plaintext provider key file was retired into a sealed backup",
                  file=str(keys_file), backup=str(folder))
    stripped = strip_config_secrets(ledger, config_file, data_dir, backup_dir, imported)
    if stripped is not None:
        _log.info("the plaintext secrets of the config file were replaced by their masks",
                  file=str(config_file), paths=len(stripped.paths),
                  backup=str(stripped.backup_dir))


def strip_hand_edit(ledger: Ledger, config_file: Path, data_dir: Path,
                    doc: Doc | None, imported: bytes | None) -> None:
    """After a hand edit was imported: a file whose secrets were masked before (no
    --keep-files) gets a secret typed back in masked again, now that the ledger holds it
    sealed; a file kept with --keep-files (no mask in it) is left as the operator keeps
    it. A file that cannot be written is logged, never raised: the import stands, and a
    read command never fails for this."""
    if doc is None or not holds_mask(doc):  # it was stripped before
        return
    try:
        stripped = strip_config_secrets(ledger, config_file, data_dir, imported=imported)
    except (LedgerError, OSError) as err:
        _log.warning("a secret typed into the config file stays there in clear",
                     file=str(config_file), error=str(err))
        return
    if stripped is not None:
        _log.info("the secrets of a hand edit were replaced by their masks in the file",
                  file=str(config_file), paths=len(stripped.paths))
