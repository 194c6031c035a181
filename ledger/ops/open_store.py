"""`open_store()`: the configuration store a gateway should use, chosen as Moltis would
(which files and which store: `ledger.ops.installation`).

Safety (the seed's rollout rule): the first time a ledger is opened with existing
files it imports them (after a backup); if the ledger cannot be opened or that import
fails, the gateway still starts read-only on the newest state that can be proven (the
ledger read-only, else its head mirror, else a config file that was never imported),
with a warning, and every write raises ReadOnlyError saying why. A config file that was
imported into an existing ledger is never served in its place: BackendUnavailableError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ledger._log import get_logger
from ledger.backends.open import is_dsn, sqlite_path
from ledger.core.secret_refs import holds_mask
from ledger.core.wiring import wiring_table
from ledger.engine.vault import KeySource
from ledger.errors import (
    BackendUnavailableError,
    ConfigValidationError,
    FileConflictError,
    LedgerError,
)
from ledger.files import dirs
from ledger.files.change_key import file_stat_key, settled
from ledger.ops.file_digest import META_CONFIG, damaged_record, in_step
from ledger.ops.installation import (
    Installation,
    describe_location,
)
from ledger.stores.contract import ConfigStore
from ledger.stores.ledger_store import LedgerConfigStore

__all__ = ["Installation", "WrongLedgerError", "attach_files", "discard_if_empty",
           "open_ledger", "open_store", "sync_hand_edit"]

_log = get_logger("ledger.ops.open_store")


def open_store(*, config_dir: str | os.PathLike[str] | None = None,
               data_dir: str | os.PathLike[str] | None = None, db: str | None = None,
               backend: str | None = None, env: Mapping[str, str] | None = None,
               read_only: bool = False, auto_migrate: bool = True,
               synchronous: str = "FULL") -> ConfigStore:
    """The store for this installation (see the module docstring)."""
    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.file_store import FileConfigStore

    inst = Installation.find(config_dir, data_dir, env)
    name, location = inst.select(backend=backend, db=db)
    if name == "file":
        if inst.doc is not None and holds_mask(inst.doc):
            # a file `migrate` masked, run on anyway (MOLTIS_CONFIG_BACKEND=file): a typed
            # secret reveals nothing (Secret.placeholder), a free-form one is the mask's
            # text, as the ledger gives a secret it cannot open; never silently
            _log.warning("the config file holds masked secret placeholders, which the file "
                         "store cannot open: the gateway gets no value for them; run it on "
                         "the ledger, or `moltis-ledger switch-backend file` to write the "
                         "values back", file=str(inst.config_file))
        return FileConfigStore(inst.config_file, read_only=read_only)
    assert location is not None
    created = not is_dsn(location) and not Path(location).exists()
    store: LedgerConfigStore | None = None
    try:
        store = open_ledger(location, read_only=read_only, synchronous=synchronous,
                            keys=KeySource(key_file=dirs.default_key_file(inst.config_home,
                                                                          inst.env),
                                           env=inst.env))
        attach_files(store, inst)
        if auto_migrate and not read_only and _needs_first_import(store, inst.config_file,
                                                                  inst.keys_file):
            from ledger.ops.migrate import migrate  # lazy: loaded only on this path (CLI start-up)

            if inst.parse_error is not None:
                raise inst.parse_error
            _refuse_import_into_another_ledger(store, inst, location)
            report = migrate(store.ledger, config_file=inst.config_file,
                             keys_file=inst.keys_file, data_dir=inst.data_home,
                             documents={"config": inst.doc}, config_data=inst.data,
                             reason="first start on the ledger: import of the files")
            if inst.section().get("backend") == name:  # the switch is in the file
                _retire_keys_file(store, inst, report.backup_dir)
        elif not read_only:
            sync_hand_edit(store, inst)
        return store
    except (LedgerError, OSError) as err:
        if store is not None:
            if created:
                discard_if_empty(store, location)
            else:
                store.ledger.close()
        if isinstance(err, WrongLedgerError):
            raise  # serving anything here would hide the real ledger's changes
        return _fallback(inst, name, location, err, synchronous)


def _retire_keys_file(store: LedgerConfigStore, inst: Installation,
                      backup_dir: Path | None) -> None:
    """As `migrate` does: the plaintext key file goes into the sealed backup once the
    ledger holds exactly its keys (a key file that differs is kept); the config file's
    secrets the ledger holds sealed are replaced by their masks."""
    # lazy: only on a first start
    from ledger.ops.strip_secrets import after_first_import

    after_first_import(store.ledger, inst.config_file, inst.keys_file, inst.data_home,
                       backup_dir, inst.data)


class WrongLedgerError(BackendUnavailableError):
    """The config file was imported into another ledger than the one found here."""


def _refuse_import_into_another_ledger(store: LedgerConfigStore, inst: Installation,
                                       location: str) -> None:
    """A file that names the ledger it was imported into (`[config] ledger_id`, set by
    migrate) is not imported into another one: a changed data dir (a container volume,
    another user's ~/.moltis) would otherwise serve the pre-import state as healthy."""
    recorded = inst.section().get("ledger_id")
    if not isinstance(recorded, str) or recorded == store.ledger.backend.get_meta("ledger_id"):
        return
    raise WrongLedgerError(
        f"{inst.config_file} was imported into ledger {recorded}, not the one at "
        f"{describe_location(location)}: it is not imported again, since that ledger may "
        "have moved on. Point MOLTIS_DATA_DIR (or [config] db / MOLTIS_CONFIG_DB) back at "
        "that ledger, or run `moltis-ledger migrate` to import the file into this one "
        "deliberately")


def _fallback(inst: Installation, name: str, location: str, err: BaseException,
              synchronous: str) -> ConfigStore:
    """The newest state that can be proven, read-only: the ledger itself opened
    read-only (a full disk, read-only media), else the head mirror, else — only when
    the ledger holds nothing newer that we could know of — the config file, whose bad
    values are reported and left out rather than fatal."""
    # lazy: loaded only on this path (CLI start-up)
    from ledger.ops.mirror import MIRROR_NAME, read_mirror

    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.file_store import FileConfigStore

    where = describe_location(location)
    reason = (f"the {name} ledger at {where} could not be used for writing ({err}); "
              "running read-only until that is fixed")
    keys = KeySource(key_file=dirs.default_key_file(inst.config_home, inst.env), env=inst.env)
    store = _open_read_only(location, keys, where, synchronous)
    if store is not None:
        try:
            seq = store.ledger.head_state().seq
        except LedgerError as bad:  # an older copy put back is refused here too: the mirror
            _log.warning("the configuration ledger cannot be served", location=where,
                         error=str(bad))
            seq = 0
        if seq > 0:
            attach_files(store, inst, mirror=False)
            store.ledger.backend.read_only_reason = reason  # what every write's error says
            _log.warning("the configuration ledger is read-only", backend=name,
                         location=where, error=str(err))
            return store
        store.ledger.close()
    try:
        mirror = read_mirror(inst.data_home / MIRROR_NAME, mirror_key(location), keys, reason)
    except LedgerError as bad:
        _log.warning("the head mirror cannot be used", error=str(bad))
        mirror = None
    if mirror is not None:
        # its effective `[config]` names the ledger it mirrors, as the ledger's own does
        # (`LedgerConfigStore._wiring`: a DSN in `dsn`, a secret every display masks, a
        # SQLite file by its path as the backend keeps it, `a/./moltis.db` as
        # `a/moltis.db`, `sqlite:///x.db` as `/x.db`)
        mirror.wiring = wiring_table(backend=name, location=location if name == "postgres"
                                     else str(Path(sqlite_path(location))),
                                     ledger_id=(mirror.wiring or {}).get("ledger_id"))
        _log.warning("the configuration ledger is unavailable; serving its head mirror",
                     backend=name, location=where, seq=mirror.seq,
                     served=f"seq {mirror.seq} from {mirror.where}", error=str(err))
        return mirror
    _refuse_pre_import_file(inst, name, location, err)
    _log.warning("the configuration ledger is unavailable; continuing read-only on the "
                 "file store", backend=name, location=where, error=str(err))
    fallback = FileConfigStore(inst.config_file, read_only=True, lenient=True)
    fallback.read_only_reason = (
        f"the {name} ledger at {where} could not be used ({err}); running read-only "
        "on the file store until that is fixed")
    return fallback


def _refuse_pre_import_file(inst: Installation, name: str, location: str,
                            err: BaseException) -> None:
    """The config file is never served once it was imported into a ledger that exists:
    the ledger may have moved on since, and nothing here can prove it did not. The file
    says so itself (migrate sets `[config] backend` to the ledger); a file switched by
    hand whose ledger was never created is still the newest state and is served."""
    try:
        section = inst.section()
    except LedgerError:
        return
    named = section.get("backend")
    if not (isinstance(named, str) and named.strip().lower() in ("sqlite", "postgres")):
        return
    imported = isinstance(section.get("ledger_id"), str)
    if not imported and not is_dsn(location) and not Path(location).exists():
        return
    where = describe_location(location)
    raise BackendUnavailableError(
        f"the {name} ledger at {where} cannot be used ({err}) and no head mirror proves "
        f"its state; {inst.config_file} was imported into it ([config] backend = "
        f"{named!r}) and may be older than the ledger, so it is not served. Fix the "
        "ledger (free space, permissions, or `moltis-ledger restore` from a backup), or "
        f'set backend = "file" in {inst.config_file} to run on that file deliberately')


def _open_read_only(location: str, keys: KeySource, where: str, synchronous: str
                    ) -> LedgerConfigStore | None:
    """The ledger opened read-only; on a full disk SQLite cannot even create the -shm
    file readers need, so a file whose WAL holds no commits is then opened immutable
    (nothing can be written there anyway; a non-empty WAL would be missed, so not)."""
    try:
        return open_ledger(location, read_only=True, synchronous=synchronous, keys=keys)
    except (LedgerError, OSError) as err:
        _log.info("the ledger cannot be read", location=where, error=str(err))
    if is_dsn(location):
        return None
    wal = Path(f"{location}-wal")
    if not Path(location).exists() or (wal.exists() and wal.stat().st_size):
        return None
    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.ledger_store import SqliteConfigStore

    try:
        return SqliteConfigStore(location, read_only=True, keys=keys, immutable=True)
    except (LedgerError, OSError) as err:
        _log.info("the ledger cannot be read immutable either", location=where,
                  error=str(err))
        return None


def attach_files(store: LedgerConfigStore, inst: Installation, *, mirror: bool = True
                 ) -> None:
    """Tell a ledger store which files it was imported from (for the provider-key
    fallback and for importing hand edits while it runs, e.g. during `watch`), and
    keep the head mirror (`ledger.ops.mirror`) up to date after its commits."""
    store.config_file = inst.config_file
    store.keys_file = inst.keys_file
    # a read-only open never commits: no mirror to keep (nor its modules to load)
    if mirror and not store.ledger.backend.read_only and (
            store.ledger.backend.get_meta("ledger_id") is not None):
        # lazy: loaded only on this path (CLI start-up)
        from ledger.ops.mirror import MIRROR_NAME, attach_mirror

        attach_mirror(store.ledger, inst.data_home / MIRROR_NAME,
                      mirror_key(store.ledger.backend.location))

    seen: dict[str, Any] = {"stat": file_stat_key(inst.config_file), "message": None}

    def sync_again() -> None:
        key = file_stat_key(inst.config_file)
        if key == seen["stat"] or not settled(key):
            return  # cheap: only a changed file that stopped changing is parsed again
        seen["stat"] = key
        fresh = inst.copy()
        fresh.read()
        seen["message"] = sync_hand_edit(store, fresh)

    store.file_sync = sync_again


def mirror_key(location: str) -> str:
    """The ledger a mirror belongs to, in a form without a password."""
    return describe_location(location) if is_dsn(location) else os.path.abspath(location)


def sync_hand_edit(store: LedgerConfigStore, inst: Installation) -> str | None:
    """Import a hand edit of the config file (source `file`). A file that no longer
    parses, or an edit that conflicts with a later ledger change, is not imported: the
    reason is logged and returned, and the ledger keeps serving its own state. A file
    the digest proves in step costs no import machinery at all."""
    if store.ledger.backend.read_only or not inst.config_file.exists():
        return None
    if inst.parse_error is None and in_step(store.ledger, inst.config_file, inst.data):
        return None
    # lazy: the import machinery (schema, fingerprints) only for a file that changed
    from ledger.ops.hand_edit import import_hand_edit

    if inst.parse_error is not None:
        message = (f"{inst.config_file} does not parse, so a hand edit cannot be imported: "
                   f"{inst.parse_error}; the ledger keeps serving seq "
                   f"{store.ledger.head_state().seq}")
        _log.warning("hand edit not imported", reason=message)
        return message
    damaged = damaged_record(store.ledger, META_CONFIG, str(inst.config_file))
    if damaged:  # what changed in the file cannot be told: nothing is imported
        _log.warning("hand edit not imported", reason=damaged)
        return damaged
    try:
        report = import_hand_edit(store.ledger, inst.config_file, config_doc=inst.doc,
                                  config_data=inst.data, data_dir=inst.data_home)
    except FileConflictError as err:
        _log.warning("hand edit not imported", reason=str(err))
        return str(err)
    except ConfigValidationError as err:
        # a typo in a hand edit is treated like a file that does not parse: reported,
        # not imported, and the ledger stays writable (raising here would send
        # open_store() to its read-only fallback and refuse every write)
        message = (f"{inst.config_file} has a value that does not validate, so the hand "
                   f"edit was not imported: {err}; the ledger keeps serving seq "
                   f"{store.ledger.head_state().seq}")
        _log.warning("hand edit not imported", reason=message)
        return message
    if report is not None and report.commit is not None:
        _log.info("imported a hand edit", file=str(inst.config_file), seq=report.commit.seq,
                  paths=len(report.changes))
        from ledger.ops.strip_secrets import strip_hand_edit  # lazy: only after an import
        strip_hand_edit(store.ledger, inst.config_file, inst.data_home, inst.doc, inst.data)
    return None


def discard_if_empty(store: LedgerConfigStore, location: str) -> None:
    """Remove a SQLite ledger this open created when nothing went into it (a failed
    first import), so that no empty moltis.db claims "ok at seq 0"."""
    try:
        empty = store.ledger.backend.head().seq == 0
    except LedgerError:
        empty = False
    store.ledger.close()
    if not empty:
        return
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        try:
            os.unlink(location + suffix)
        except FileNotFoundError:
            pass
        except OSError as err:
            _log.warning("cannot remove the empty ledger", path=location + suffix,
                         error=err.strerror)


def open_ledger(location: str, *, read_only: bool = False, busy_timeout: float = 5.0,
                keys: KeySource | None = None, synchronous: str = "FULL"
                ) -> LedgerConfigStore:
    """The ledger at `location`: a PostgreSQL DSN, else a SQLite file (no fallback)."""
    if is_dsn(location):
        # lazy: optional extra (psycopg), loaded only for PostgreSQL
        from ledger.stores.postgres_store import PostgresConfigStore

        return PostgresConfigStore(location, read_only=read_only, keys=keys,
                                   busy_timeout=busy_timeout)
    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.ledger_store import SqliteConfigStore

    sync: Literal["FULL", "NORMAL"] = "NORMAL" if synchronous.upper() == "NORMAL" else "FULL"
    return SqliteConfigStore(location, read_only=read_only, keys=keys, synchronous=sync,
                             busy_timeout=busy_timeout)


def _needs_first_import(store: LedgerConfigStore, config_file: Path, keys_file: Path) -> bool:
    # lazy: loaded only on this path (CLI start-up)
    from ledger.stores.key_file import META_KEYS

    backend = store.ledger.backend
    imported = backend.get_meta(META_CONFIG) is not None or backend.get_meta(META_KEYS) is not None
    return not imported and (config_file.exists() or keys_file.exists())
