"""PostgreSQL helpers for the tests: every store gets its own brand-new schema.

Schemas are named `t_<pid>_<n>_<random>` and dropped when the test process exits (an
atexit hook, with the stores' pools closed first), so a developer's own server is left
as it was found; the CI server is throwaway anyway. A crashed test run may leave some
behind: `DROP SCHEMA ... CASCADE` them, or throw the test server away.
"""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
import weakref
from typing import Any

_counter = itertools.count()
_schemas: list[tuple[str, str]] = []  # (dsn, schema) to drop at exit
_stores: weakref.WeakSet[Any] = weakref.WeakSet()


def new_schema_name() -> str:
    return f"t_{os.getpid()}_{next(_counter)}_{secrets.token_hex(3)}"


def register_schema(url: str, schema: str) -> None:
    if not _schemas:
        atexit.register(_cleanup)
    _schemas.append((url, schema))


def fresh_pg_store(url: str, **kwargs: Any) -> Any:
    """A PostgresConfigStore on a new, empty schema of the server at `url`."""
    from ledger.stores.postgres_store import PostgresConfigStore

    schema = new_schema_name()
    register_schema(url, schema)
    # the smallest pool: a connection handed back in a wrong state shows at once
    kwargs.setdefault("pool_size", 1)
    store = PostgresConfigStore(url, schema=schema, **kwargs)
    _stores.add(store)
    return store


def keyed_writer(url: str, host_dir: Any) -> tuple[Any, bytes]:
    """A keyed PostgresConfigStore on a new schema, its head mark in `host_dir` (the
    writer host's config dir, created here), and its key."""
    import secrets as _secrets

    from ledger.engine.vault import KeySource

    key = _secrets.token_bytes(32)
    host_dir.mkdir()
    return fresh_pg_store(url, keys=KeySource(key=key, env={},
                                              key_file=host_dir / "ledger.key")), key


def keyed_reader_port(url: str, schema: str, key: bytes, key_file: Any) -> object:
    """What a new keyed reader of `schema` serves as `server.port` (a host of its own:
    its head mark in `key_file`'s folder), or the LedgerError it refuses with."""
    import asyncio

    from ledger.engine.vault import KeySource
    from ledger.errors import LedgerError
    from ledger.stores.postgres_store import PostgresConfigStore

    reader = PostgresConfigStore(url, schema=schema, pool_size=1,
                                 keys=KeySource(key=key, key_file=key_file, env={}))
    try:
        return asyncio.run(reader.load_raw()).server.port
    except LedgerError as err:
        return err
    finally:
        reader.ledger.close()


def _cleanup() -> None:
    import contextlib

    import psycopg

    for store in list(_stores):
        with contextlib.suppress(Exception):
            store.pg.close()
    by_url: dict[str, list[str]] = {}
    for url, schema in _schemas:
        by_url.setdefault(url, []).append(schema)
    for url, schemas in by_url.items():
        with contextlib.suppress(psycopg.Error), psycopg.connect(
                url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '5s'")
            for schema in schemas:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
