"""The one rule for "is this location a SQLite path or a PostgreSQL DSN?", and opening a
backend from it. Every caller (open_store, transfer, the CLI) decides it here."""

from __future__ import annotations

import os
import re
from typing import Literal

from ledger.backends.base import Backend
from ledger.errors import InputError

__all__ = ["backend_kind", "is_dsn", "open_backend", "same_location", "sqlite_path"]

_DSN_PREFIXES = ("postgresql://", "postgres://")
# libpq's `key=value` form by its shape, not a list of its keywords (review r30 found
# "password=… host=…" taken for a SQLite file; each libpq release adds keywords); a
# SQLite file whose name holds `=` is named with `sqlite://`. Compiled on first use (by
# `re`'s own cache), and only for a text holding `=`: `get` on the default ledger never
# asks (issue 16)
_LIBPQ_KEY = r"\s*[A-Za-z_]+\s*="


def is_dsn(location: str) -> bool:
    """A PostgreSQL connection string: a URI, or libpq's `key=value` form."""
    return location.startswith(_DSN_PREFIXES) or (
        "=" in location and bool(re.match(_LIBPQ_KEY, location)))


def same_location(a: str | None, b: str) -> bool:
    """Whether two ledger locations name one ledger: a DSN as given, a SQLite file
    however its path is spelled (relative, `sqlite://`, through a symlinked data dir:
    review r29)."""
    if a is None:
        return False
    if a == b:
        return True
    if is_dsn(a) or is_dsn(b):
        return False
    return (os.path.realpath(a.removeprefix("sqlite://"))
            == os.path.realpath(b.removeprefix("sqlite://")))


def backend_kind(location: str) -> Literal["postgres", "sqlite"]:
    return "postgres" if is_dsn(location) else "sqlite"


def sqlite_path(location: str) -> str:
    """The file of a SQLite location (`sqlite://` prefix optional)."""
    path = location.removeprefix("sqlite://")
    if not path:
        raise InputError(f"{location!r} names no database file")
    return path


def open_backend(location: str, *, schema: str = "public", create: bool = True,
                 read_only: bool = False, busy_timeout: float = 5.0,
                 pool_size: int = 4) -> Backend:
    """A backend for a path (SQLite) or a DSN (PostgreSQL). `create=False` refuses a
    SQLite file that does not exist yet."""
    if is_dsn(location):
        # lazy: optional extra (psycopg), loaded only for PostgreSQL
        from ledger.backends.postgres import PostgresBackend

        return PostgresBackend(location, schema=schema, read_only=read_only,
                               pool_size=pool_size, busy_timeout=busy_timeout)
    from ledger.backends.sqlite import SqliteBackend  # lazy: only the backend asked for is loaded

    path = sqlite_path(location)
    if not create and not os.path.exists(path):
        raise InputError(f"{path}: no ledger database here")
    return SqliteBackend(path, read_only=read_only, busy_timeout=busy_timeout)
