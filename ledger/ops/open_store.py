"""`open_store()`: the configuration store a gateway should use, chosen as Moltis would.

Backend: the `backend=` argument, else MOLTIS_CONFIG_BACKEND, else `[config] backend`
in moltis.toml, else `file` (the seed's default: today's behaviour). Location of the
ledger: `db=` (a path, or a postgresql:// DSN), else MOLTIS_CONFIG_DSN / MOLTIS_CONFIG_DB,
else `[config] dsn` / `[config] db`, else `<data dir>/moltis.db`.

Safety (the seed's rollout rule): the first time a ledger is opened with existing
files it imports them (after a backup); if the ledger cannot be opened or that import
fails, the gateway still starts, on the file store in read-only mode, with a warning,
and every write raises ReadOnlyError saying why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from ledger._log import get_logger
from ledger.engine.vault import KeySource
from ledger.errors import InputError, LedgerError
from ledger.files import dirs
from ledger.stores.contract import ConfigStore
from ledger.stores.ledger_store import LedgerConfigStore

__all__ = ["BACKENDS", "open_ledger", "open_store", "select_backend"]

_log = get_logger("ledger.ops.open_store")
BACKENDS: Final = ("file", "sqlite", "postgres")


def _peek_config_section(config_file: Path) -> dict[str, Any]:
    """`[config]` of moltis.toml, read without the schema (it may not validate yet)."""
    from ledger.ops.migrate import read_config_file

    section = read_config_file(config_file).get("config", {})
    return section if isinstance(section, dict) else {}


def is_dsn(location: str) -> bool:
    """A PostgreSQL connection string: a URI, or libpq's `key=value` form."""
    if location.startswith(("postgresql://", "postgres://")):
        return True
    return bool(re.match(r"\s*(host|hostaddr|dbname|user|port|service)\s*=", location))


def describe_location(location: str | None) -> str:
    """A ledger location fit for logs and messages (a DSN's password removed)."""
    if location is None:
        return "?"
    if is_dsn(location):
        from ledger.backends.postgres import redact_dsn

        return redact_dsn(location)
    return location


def select_backend(*, config_file: Path, data_dir: Path, backend: str | None = None,
                   db: str | None = None, env: Mapping[str, str]) -> tuple[str, str | None]:
    """(backend name, ledger location) by the rules in this module's docstring."""
    section: dict[str, Any] = {}
    if (backend is None and not env.get("MOLTIS_CONFIG_BACKEND")) or db is None:
        try:
            section = _peek_config_section(config_file)
        except LedgerError as err:
            if backend is None and not env.get("MOLTIS_CONFIG_BACKEND"):
                raise
            _log.warning("cannot read [config] from the config file", error=str(err))
    name, origin = backend, "backend="
    if name is None and env.get("MOLTIS_CONFIG_BACKEND"):
        name, origin = env["MOLTIS_CONFIG_BACKEND"].strip().lower(), "MOLTIS_CONFIG_BACKEND"
    if name is None and isinstance(section.get("backend"), str):
        name, origin = section["backend"].strip().lower(), f"[config] backend in {config_file}"
    if name is None and db is not None and is_dsn(db):
        name = "postgres"
    name = name or "file"
    if name not in BACKENDS:
        raise InputError(f"unknown config backend {name!r} (from {origin}); expected one of "
                         f"{', '.join(BACKENDS)}")
    if name == "file":
        return name, None
    location = db
    if location is None:
        location = env.get("MOLTIS_CONFIG_DSN") if name == "postgres" else env.get(
            "MOLTIS_CONFIG_DB")
    if location is None:
        value = section.get("dsn" if name == "postgres" else "db")
        location = value if isinstance(value, str) else None
    if location is None:
        if name == "postgres":
            raise InputError("the postgres backend needs a DSN: --db postgresql://..., "
                             "MOLTIS_CONFIG_DSN, or [config] dsn")
        location = str(dirs.default_db_path(data_dir))
    return name, location


def open_store(*, config_dir: str | os.PathLike[str] | None = None,
               data_dir: str | os.PathLike[str] | None = None, db: str | None = None,
               backend: str | None = None, env: Mapping[str, str] | None = None,
               read_only: bool = False, auto_migrate: bool = True,
               synchronous: str = "FULL") -> ConfigStore:
    """The store for this installation (see the module docstring)."""
    from ledger.stores.file_store import FileConfigStore, discover_config_file

    env = os.environ if env is None else env
    config_home = dirs.config_dir(config_dir, env)
    data_home = dirs.data_dir(data_dir, env)
    config_file = discover_config_file(config_dir, env)
    name, location = select_backend(config_file=config_file, data_dir=data_home,
                                    backend=backend, db=db, env=env)
    if name == "file":
        return FileConfigStore(config_file, read_only=read_only)
    keys_file = config_home / dirs.KEYS_FILE_NAME
    try:
        assert location is not None
        if name == "postgres" and not is_dsn(location):
            raise InputError(f"the postgres backend needs a postgresql:// DSN, not {location!r}")
        store = open_ledger(location, read_only=read_only, synchronous=synchronous,
                            keys=KeySource(key_file=dirs.default_key_file(config_home, env),
                                           env=env))
        store.config_file = config_file
        store.keys_file = keys_file
        if auto_migrate and not read_only and _needs_first_import(store, config_file, keys_file):
            from ledger.ops.migrate import migrate

            migrate(store.ledger, config_file=config_file, keys_file=keys_file,
                    data_dir=data_home, reason="first start on the ledger: import of the files")
        return store
    except (LedgerError, OSError) as err:
        where = describe_location(location)
        _log.warning("the configuration ledger is unavailable; continuing read-only on the "
                     "file store", backend=name, location=where, error=str(err))
        fallback = FileConfigStore(config_file, read_only=True)
        fallback.read_only_reason = (
            f"the {name} ledger at {where} could not be used ({err}); running read-only "
            "on the file store until that is fixed")
        return fallback


def open_ledger(location: str, *, read_only: bool = False, busy_timeout: float = 5.0,
                keys: KeySource | None = None, synchronous: str = "FULL"
                ) -> LedgerConfigStore:
    """The ledger at `location`: a PostgreSQL DSN, else a SQLite file (no fallback)."""
    if is_dsn(location):
        from ledger.stores.postgres_store import PostgresConfigStore

        return PostgresConfigStore(location, read_only=read_only, keys=keys,
                                   busy_timeout=busy_timeout)
    from ledger.stores.ledger_store import SqliteConfigStore

    sync: Literal["FULL", "NORMAL"] = "NORMAL" if synchronous.upper() == "NORMAL" else "FULL"
    return SqliteConfigStore(location, read_only=read_only, keys=keys, synchronous=sync,
                             busy_timeout=busy_timeout)


def _needs_first_import(store: LedgerConfigStore, config_file: Path, keys_file: Path) -> bool:
    from ledger.ops.migrate import META_CONFIG, META_KEYS

    backend = store.ledger.backend
    imported = backend.get_meta(META_CONFIG) is not None or backend.get_meta(META_KEYS) is not None
    return not imported and (config_file.exists() or keys_file.exists())
