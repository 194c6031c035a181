"""Switching the backend the gateway uses, and proving the switch changed nothing else.

`[config] backend` in the config file (or MOLTIS_CONFIG_BACKEND) is what `open_store()`
follows. `migrate` sets it to the ledger after importing; `switch_backend()` is the
way in both directions: back up, move the state across (to the file store: the
ledger's head written into moltis.toml and provider_keys.json with the real secret
values, comments kept), set the backend, then open the store exactly as a gateway
would and compare its effective config and providers with the ledger's.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ledger._log import get_logger
from ledger.core.document import Doc, leaves
from ledger.core.keypaths import format_path
from ledger.core.secret_refs import Secret, holds_mask, parse_mask
from ledger.engine.ledger import Ledger
from ledger.errors import LedgerError, SecretDestroyedError, VerificationError
from ledger.files import dirs
from ledger.files.safe_io import read_file, replace_file
from ledger.ops.display import display_doc
from ledger.ops.hand_edit import record_file_sync
from ledger.ops.migrate import sealed_backup
from ledger.stores.contract import ConfigStore, ProviderStore
from ledger.stores.ledger_store import LedgerConfigStore

__all__ = ["SwitchReport", "gateway_backend", "head_documents", "prove_same",
           "set_backend_in_file", "switch_to_file"]

_log = get_logger("ledger.ops.switch")


@dataclass
class SwitchReport:
    backend: str
    location: str | None
    config_file: Path
    backup_dir: Path | None = None
    written: list[Path] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


def gateway_backend(config_file: Path, data_dir: Path, env: Mapping[str, str] | None = None
                    ) -> tuple[str, str | None]:
    """(backend, location) that `open_store()` picks for this installation."""
    # lazy: loaded only on this path (CLI start-up)
    from ledger.ops.installation import select_backend

    return select_backend(config_file=config_file, data_dir=data_dir,
                          env=os.environ if env is None else env)


def _backend_changes(data_dir: Path, backend: str, location: str | None,
                     env: Mapping[str, str]
                     ) -> tuple[dict[tuple[str, ...], Any], list[tuple[str, ...]]]:
    """What to set in `[config]` for `backend` at `location`, and what to remove: a
    `db`/`dsn` the environment gives (MOLTIS_CONFIG_DB, MOLTIS_CONFIG_DSN) is left to
    it; the default ledger is named by no `db`, and one left from another ledger would
    keep the gateway there (review r20: "nothing to switch", the gateway on the other
    one)."""
    sets: dict[tuple[str, ...], Any] = {("config", "backend"): backend}
    unsets: list[tuple[str, ...]] = []
    if backend == "sqlite" and not env.get("MOLTIS_CONFIG_DB"):
        if location is not None and os.path.abspath(location) != os.path.abspath(
                str(dirs.default_db_path(data_dir))):
            sets[("config", "db")] = os.path.abspath(location)
        else:
            unsets.append(("config", "db"))
    # never a DSN the environment gives (its password would land in the file):
    # MOLTIS_CONFIG_DSN, or MOLTIS_CONFIG_DB naming one under backend sqlite
    if backend == "postgres" and location is not None and not env.get("MOLTIS_CONFIG_DSN") \
            and location != env.get("MOLTIS_CONFIG_DB"):
        sets[("config", "dsn")] = location
    return sets, unsets


def set_backend_in_file(config_file: Path, data_dir: Path, backend: str,
                        location: str | None, *, actor: str | None = None,
                        env: Mapping[str, str] | None = None,
                        ledger_id: str | None = None) -> bytes | None:
    """Write `[config] backend` (and `db`/`dsn` when not the default, and the
    `ledger_id` the file was imported into) into the config file, in place: comments,
    order and every other key are kept. Returns the bytes written (None: no change)."""
    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.file_store import FileConfigStore

    env = os.environ if env is None else env
    store = FileConfigStore(config_file)  # TOML, YAML or JSON, each edited in its format
    sets, unsets = _backend_changes(data_dir, backend, location, env)
    if ledger_id is not None:
        sets[("config", "ledger_id")] = ledger_id
    asyncio.run(store.edit(sets, unsets, actor=actor,
                           reason=f"switch the config backend to {backend}", source="migrate"))
    return store.written


def _comparable(cfg: Any) -> Any:
    def reveal(value: Any) -> Any:
        if isinstance(value, Secret):
            try:
                return {"secret": value.reveal()}
            except LedgerError:
                return {"secret-unavailable": value.fingerprint}
        raise TypeError(type(value).__name__)

    doc = msgspec.to_builtins(cfg, enc_hook=reveal)
    if isinstance(doc, dict):
        doc.pop("config", None)  # where the config lives is what a switch changes
    return doc


def _fingerprints(cfg: Any) -> Any:
    """The config as builtins with each sealed secret as its fingerprint."""
    def fp(value: Any) -> Any:
        if isinstance(value, Secret):
            return {"fp": value.fingerprint}
        raise TypeError(type(value).__name__)

    return msgspec.to_builtins(cfg, enc_hook=fp)


def _unmasked(old: Any, new: Any, prints: Any, fingerprint: Any) -> Any:
    """`old` with each mask placeholder (a config file whose secrets `migrate` masked)
    read as the secret of `new` at the same place when their fingerprints agree: the
    import reads such a mask as "the sealed value already held", so do the proof."""
    masked = _mask_fp(old)
    if masked is not None:
        if ((isinstance(prints, dict) and prints.get("fp") == masked)
                or (isinstance(prints, str) and fingerprint is not None
                    and fingerprint(prints) == masked)):  # a secret served as plain text
            return new
        return old
    if isinstance(old, list) and isinstance(new, list) and isinstance(prints, list) and (
            len(old) == len(new) == len(prints)):
        return [_unmasked(o, n, p, fingerprint)
                for o, n, p in zip(old, new, prints, strict=True)]
    if isinstance(old, dict) and isinstance(new, dict) and isinstance(prints, dict):
        return {k: _unmasked(v, new[k], prints.get(k), fingerprint) if k in new else v
                for k, v in old.items()}
    return old


def _mask_fp(value: Any) -> str | None:
    """The fingerprint a mask placeholder stands for in a `_comparable` value: a
    free-form string, or a typed secret the file store could not reveal (its mask,
    `Secret.placeholder`); None for anything else."""
    if isinstance(value, dict) and set(value) == {"secret-unavailable"}:
        fp = value["secret-unavailable"]
        return fp if isinstance(fp, str) else None
    text = value.get("secret") if isinstance(value, dict) and set(value) == {"secret"} else value
    mask = parse_mask(text) if isinstance(text, str) else None
    return None if mask is None else mask[0]


async def _providers(store: ProviderStore, convert: Any = None) -> dict[str, Any]:
    found = await store.effective()
    return {name: (convert or _comparable)(msgspec.structs.replace(p, sources={}))
            for name, p in found.items()}


async def prove_same(old: ConfigStore, old_providers: ProviderStore, new: ConfigStore,
                     new_providers: ProviderStore) -> list[str]:
    """Raise VerificationError naming the first differing sections unless both stores
    give the same effective config (`[config]` aside) and the same providers. A mask
    `migrate` left in the old config file counts as the new store's secret of the same
    fingerprint (`_unmasked`)."""
    ledger = getattr(new, "ledger", None)
    fingerprint = ledger.vault.fingerprint if ledger is not None else None
    new_cfg = await new.load_effective()
    a, b = _comparable(await old.load_effective()), _comparable(new_cfg)
    if a != b:
        a = _unmasked(a, b, _fingerprints(new_cfg), fingerprint)
    if a != b:
        bad = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise VerificationError(
            f"the {new.backend_name} store does not give the same effective config as the "
            f"{old.backend_name} store (differs in: {', '.join(bad)})", None)
    pa, pb = await _providers(old_providers), await _providers(new_providers)
    if pa != pb:
        pa = _unmasked(pa, pb, await _providers(new_providers, _fingerprints), fingerprint)
    if pa != pb:
        bad = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
        raise VerificationError(
            f"the {new.backend_name} store does not give the same providers as the "
            f"{old.backend_name} store (differs in: {', '.join(bad)})", None)
    return ["effective config", f"{len(pa)} provider(s)"]


def head_documents(ledger: Ledger, into: str) -> tuple[Doc, Doc]:
    """The ledger's head (config, keys) with the real secret values: what a switch
    carries to another store (`into`, for the refusal). Refused when a secret has no
    value (shredded, or imported from a masked export): the other store would hold
    placeholders."""
    state = ledger.head_state()
    ledger.vault.fingerprint("")  # fail now, before touching anything, without the key
    config = display_doc(state.config, ledger.vault, reveal=True)
    keys = display_doc(state.keys, ledger.vault, reveal=True)
    withheld = [prefix + format_path(path) for prefix, doc in (("", config), ("keys:", keys))
                for path, value in leaves(doc) if holds_mask(value)]
    if withheld:
        raise SecretDestroyedError(
            f"the ledger has no value for {', '.join(withheld)} (shredded, or imported from "
            f"a masked export): {into} would hold placeholders; set them again first")
    return config, keys


def switch_to_file(ledger_store: LedgerConfigStore, *, config_file: Path, keys_file: Path,
                   data_dir: Path, actor: str | None = None,
                   env: Mapping[str, str] | None = None) -> SwitchReport:
    """Back up the files, write the ledger's head into them (real secret values,
    comments kept), set `backend = "file"`, and prove the file store gives the same."""
    from ledger.ops.open_store import open_store  # lazy: loaded only on this path (CLI start-up)

    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.file_providers import FileProviderStore

    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.file_store import FileConfigStore

    env = os.environ if env is None else env
    ledger = ledger_store.ledger
    report = SwitchReport("file", None, config_file)
    config, keys = head_documents(ledger, "a file store")
    config.setdefault("config", {})
    if isinstance(config["config"], dict):
        config["config"]["backend"] = "file"
    reason = "switch the config backend to file (export of the ledger head)"
    report.backup_dir = sealed_backup(ledger, [config_file, keys_file], data_dir)
    # what each file held, put back if the switch does not prove itself
    before = [_held(path) for path in (keys_file, config_file)]
    config_store = FileConfigStore(config_file)

    async def write() -> None:
        # the keys first: moltis.toml's `backend = "file"` is what moves the gateway, so
        # it is written last (killed between the two, the gateway stays on the ledger)
        await FileProviderStore(keys_file).import_keys(keys, actor=actor, reason=reason,
                                                       source="migrate")
        await config_store.save_raw(config, actor=actor, reason=reason, source="migrate")

    async def prove() -> list[str]:
        new = open_store(config_dir=config_file.parent, data_dir=data_dir, env=env)
        if not isinstance(new, FileConfigStore):
            raise VerificationError(f"after the switch, open_store() still opens the "
                                    f"{new.backend_name} backend (is MOLTIS_CONFIG_BACKEND "
                                    "set?)", None)
        providers = FileProviderStore(keys_file, config_store=new)
        return await prove_same(ledger_store, ledger_store.providers, new, providers)

    try:
        asyncio.run(write())
        report.checked = asyncio.run(prove())
    except BaseException:
        _put_back(before)  # the gateway stays where it was (review r11: it had moved)
        raise
    report.written = [config_file, keys_file]
    record_file_sync(ledger, config_file, data=config_store.written)
    return report


@dataclass(frozen=True)
class _Held:
    """A file as it was before a switch: its bytes and mode (None: there was none) and
    whether its name was a symbolic link (the operator's own: written through)."""

    path: Path
    data: bytes | None
    mode: int | None
    link: bool


def _held(path: Path) -> _Held:
    data = read_file(path, "the file switched to")
    mode = stat.S_IMODE(path.stat().st_mode) if data is not None else None
    return _Held(path, data, mode, path.is_symlink())


def _put_back(before: list[_Held]) -> None:
    """The files as they were before a switch that failed: their bytes and modes, and
    where there was no file, none (through a dangling link of the operator's, the file
    written at its target is removed, the link kept). A file that cannot be put back is
    logged and the others still are; the switch's own failure is what is raised."""
    for held in before:
        try:
            if held.data is not None:
                replace_file(held.path, held.data, mode=held.mode or 0o600)
            elif held.link:
                target = Path(os.path.realpath(held.path))
                if target != held.path and target.is_file() and not target.is_symlink():
                    target.unlink()
            else:
                held.path.unlink(missing_ok=True)
        except (OSError, LedgerError) as err:
            _log.warning("a file of the failed switch could not be put back",
                         file=str(held.path), error=str(err))
