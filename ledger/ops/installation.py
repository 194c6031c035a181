"""An installation: where Moltis's files are (the config file Moltis would read, its
key file, the data dir) and which store they name (`select_backend`), read once and
without the schema, as every CLI command and `open_store()` do before anything else.

Backend: the `backend=` argument, else MOLTIS_CONFIG_BACKEND, else `[config] backend`
in moltis.toml, else `file` (the seed's default: today's behaviour). Location of the
ledger: `db=` (a path, or a postgresql:// DSN), else MOLTIS_CONFIG_DSN / MOLTIS_CONFIG_DB,
else `[config] dsn` / `[config] db`, else `<data dir>/moltis.db`. A DSN opens PostgreSQL
whatever the backend said, so MOLTIS_CONFIG_DB may name a PostgreSQL ledger too (after
MOLTIS_CONFIG_DSN), for either backend name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from ledger._log import get_logger
from ledger.backends.open import backend_kind, is_dsn
from ledger.core.document import Doc
from ledger.errors import (
    InputError,
    LedgerError,
    ParseError,
)
from ledger.files import dirs
from ledger.files.documents import config_format, parse_document
from ledger.files.safe_io import read_file
from ledger.stores.config_file import parse_config

__all__ = ["BACKENDS", "Installation", "describe_location", "select_backend"]

_log = get_logger("ledger.ops.installation")
BACKENDS: Final = ("file", "sqlite", "postgres")


class Installation:
    """One installation's files, found and the config file parsed once: what both
    `open_store()` and the CLI start from.

    A plain class, not a dataclass: `get` starts without dataclasses and inspect
    (issue 16)."""

    __slots__ = ("config_file", "config_home", "data", "data_home", "doc", "env",
                 "keys_file", "parse_error")

    def __init__(self, config_home: Path, data_home: Path, config_file: Path,
                 keys_file: Path, env: Mapping[str, str], doc: Doc | None = None,
                 parse_error: LedgerError | None = None, data: bytes | None = None) -> None:
        self.config_home = config_home
        self.data_home = data_home
        self.config_file = config_file
        self.keys_file = keys_file
        self.env = env
        self.doc = doc  # the parsed config file; None when missing or unparsable
        self.parse_error = parse_error
        self.data = data  # the bytes `doc` was parsed from (their digest: file_digest)

    def __repr__(self) -> str:
        return (f"Installation(config_home={self.config_home!r}, "
                f"data_home={self.data_home!r}, config_file={self.config_file!r})")

    def copy(self) -> Installation:
        return Installation(self.config_home, self.data_home, self.config_file,
                            self.keys_file, self.env, self.doc, self.parse_error, self.data)

    @classmethod
    def find(cls, config_dir: str | os.PathLike[str] | None = None,
             data_dir: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None) -> Installation:
        env = os.environ if env is None else env
        config_home = dirs.config_dir(config_dir, env)
        inst = cls(config_home, dirs.data_dir(data_dir, env),
                   dirs.discover_config_file(config_dir, env), config_home / dirs.KEYS_FILE_NAME,
                   env)
        if inst.config_file.exists():
            inst.read()  # the bytes, and the document parsed from them
        return inst

    def read(self) -> None:
        """Read the config file's bytes, and parse them (or keep why they do not parse)."""
        self.doc, self.parse_error, self.data = None, None, None
        try:
            self.data = read_file(self.config_file)
            if self.data is not None:
                self.doc = parse_config(self.config_file, self.data)
        except LedgerError as err:
            self.parse_error = err

    def section(self) -> dict[str, Any]:
        """`[config]` of the config file, read without the schema (it may not validate)."""
        if self.parse_error is not None:
            raise self.parse_error
        section = (self.doc or {}).get("config", {})
        return section if isinstance(section, dict) else {}

    def select(self, *, backend: str | None = None, db: str | None = None
               ) -> tuple[str, str | None]:
        """(backend, location) for this installation, as `open_store()` picks them. A
        config file that no longer parses does not hide a ledger it was imported into:
        the ledger at the default location is used (with a warning)."""
        try:
            return select_backend(config_file=self.config_file, data_dir=self.data_home,
                                  backend=backend, db=db, env=self.env, section=self.section)
        except ParseError:
            default = dirs.default_db_path(self.data_home)
            if backend is not None or self.env.get("MOLTIS_CONFIG_BACKEND") or (
                    not default.exists()):
                raise
            _log.warning("the config file does not parse; using the ledger at its default "
                         "location", config_file=str(self.config_file), ledger=str(default),
                         error=str(self.parse_error))
            # a DSN given with db= is PostgreSQL here too, as select_backend names it
            return (backend_kind(db) if db else "sqlite"), db or str(default)


def _peek_config_section(config_file: Path) -> dict[str, Any]:
    """`[config]` of moltis.toml, read without the schema (it may not validate yet) and
    without the import machinery of `ledger.ops.migrate` (the CLI reads it at start)."""
    data = read_file(config_file)
    if data is None:
        return {}
    section = parse_document(data, str(config_file), config_format(config_file)).get(
        "config", {})
    return section if isinstance(section, dict) else {}


def describe_location(location: str | None) -> str:
    """A ledger location fit for logs and messages (a DSN's password removed)."""
    if location is None:
        return "?"
    if is_dsn(location):
        # lazy: optional extra (psycopg), loaded only for PostgreSQL
        from ledger.backends.postgres import redact_dsn

        return redact_dsn(location)
    return location


def select_backend(*, config_file: Path, data_dir: Path, backend: str | None = None,
                   db: str | None = None, env: Mapping[str, str],
                   section: Callable[[], dict[str, Any]] | None = None
                   ) -> tuple[str, str | None]:
    """(backend name, ledger location) by the rules in this module's docstring;
    `section` gives `[config]` of an already-parsed config file."""
    section_of = section or (lambda: _peek_config_section(config_file))
    config: dict[str, Any] = {}
    if (backend is None and not env.get("MOLTIS_CONFIG_BACKEND")) or db is None:
        try:
            config = section_of()
        except LedgerError as err:
            if backend is None and not env.get("MOLTIS_CONFIG_BACKEND"):
                raise
            _log.warning("cannot read [config] from the config file", error=str(err))
    name, origin = backend, "backend="
    if name is None and env.get("MOLTIS_CONFIG_BACKEND"):
        name, origin = env["MOLTIS_CONFIG_BACKEND"].strip().lower(), "MOLTIS_CONFIG_BACKEND"
    if name is None and isinstance(config.get("backend"), str):
        name, origin = config["backend"].strip().lower(), f"[config] backend in {config_file}"
    if name is None and db is not None and is_dsn(db):
        name = "postgres"
    name = name or "file"
    if name not in BACKENDS:
        raise InputError(f"unknown config backend {name!r} (from {origin}); expected one of "
                         f"{', '.join(BACKENDS)}")
    if name == "file":
        return name, None
    location = db
    if location is None and name == "postgres":
        # MOLTIS_CONFIG_DB naming a DSN names this ledger too (it opens PostgreSQL under
        # backend sqlite, below), so a `[config] backend = "postgres"` written for it
        # finds it again (review r27)
        named = env.get("MOLTIS_CONFIG_DB")
        location = env.get("MOLTIS_CONFIG_DSN") or (named if named and is_dsn(named)
                                                     else None)
    elif location is None:
        # an empty one is unset (an env file's `MOLTIS_CONFIG_DB=`): "" would open the
        # current directory, where the CLI took the default (review r30)
        location = env.get("MOLTIS_CONFIG_DB") or None
    if location is None:
        value = config.get("dsn" if name == "postgres" else "db")
        location = value if isinstance(value, str) else None
    if location is None:
        if name == "postgres":
            raise InputError("the postgres backend needs a DSN: --db postgresql://..., "
                             "MOLTIS_CONFIG_DSN, or [config] dsn")
        location = str(dirs.default_db_path(data_dir))
    if is_dsn(location):
        # a DSN opens PostgreSQL whatever `backend` said (`open_ledger`): named so here,
        # where the gateway, the CLI and a switch all ask (MOLTIS_CONFIG_DB=postgresql://
        # under backend sqlite)
        name = "postgres"
    elif name == "postgres":
        # and a path under backend postgres is refused here too, not opened as SQLite
        # by whoever asked (the CLI wrote to such a file the gateway never reads)
        raise InputError(f"the postgres backend needs a postgresql:// DSN, not "
                         f"{describe_location(location)!r} (from {origin})")
    return name, location


