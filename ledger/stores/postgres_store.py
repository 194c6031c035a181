"""`PostgresConfigStore`: the ledger on PostgreSQL, for several gateway instances sharing
one configuration, with `watch()` woken by LISTEN/NOTIFY.

The backend (locking, SQL, error translation) is `ledger.backends.postgres`; this module
composes it with the engine, as `SqliteConfigStore` does for SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ledger._log import get_logger
from ledger.backends.postgres import MAX_PAGE, PostgresBackend, first_line
from ledger.core.events import Event
from ledger.engine.ledger import Ledger
from ledger.engine.vault import KeySource
from ledger.errors import StoreError
from ledger.stores.ledger_store import LedgerConfigStore

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresConfigStore"]

_log = get_logger("ledger.stores.postgres_store")


class PostgresConfigStore(LedgerConfigStore):
    """The ledger on PostgreSQL: several gateway instances sharing one configuration.

    :param dsn: `postgresql://user:password@host:port/dbname` or a libpq string.
    :param schema: the PostgreSQL schema holding this ledger (default "public").
    :param pool_size: at most this many connections (plus one while `watch` runs).
    """

    # a write runs in a default-executor thread of its own (`run_write`): its first try is
    # the backend's one-round-trip optimistic append, which a shared writer thread's
    # groups would give up
    dedicated_writer = False

    def __init__(self, dsn: str, *, schema: str = "public", read_only: bool = False,
                 keys: KeySource | None = None, pool_size: int = 4,
                 busy_timeout: float = 5.0) -> None:
        backend = PostgresBackend(dsn, schema=schema, read_only=read_only,
                                  pool_size=pool_size, busy_timeout=busy_timeout)
        try:
            super().__init__(Ledger(backend, keys=keys))
        except BaseException:
            backend.close()
            raise
        self.pg = backend

    async def watch(self, poll_interval: float = 0.2,
                    after: int | None = None) -> AsyncIterator[Event]:
        """New events as they are appended (by any process), in order, forever.

        Woken by LISTEN/NOTIFY (every append notifies the ledger's channel); the events
        themselves are always read from the table, after LISTEN took effect, so none
        committed in between is missed. Without a notification it re-reads every
        `max(poll_interval, 1)` seconds anyway, so a lost notification (or a writer that
        does not notify) delays an event but never loses it. A lost connection is
        reopened, with a warning logged; the watch itself goes on."""
        last = self.ledger.head_state().seq if after is None else after
        fallback = max(poll_interval, 1.0)
        errors = self.pg.driver_errors
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                if conn is None:
                    try:
                        conn = await self.pg.listen()
                    except StoreError as err:
                        _log.warning("watch cannot listen; polling until it can",
                                     location=self.pg.location, error=str(err))
                try:
                    events = await asyncio.to_thread(self._events_after, last)
                except StoreError as err:
                    # a restarting server must not end a gateway's watch: say so, retry
                    _log.warning("watch cannot read new events; retrying",
                                 location=self.pg.location, error=str(err))
                    await asyncio.sleep(fallback)
                    continue
                for ev in events:
                    if ev.seq != last + 1:
                        raise StoreError(f"{self.pg.location}: event {last + 1} is missing "
                                         f"(found {ev.seq}); run verify")
                    last = ev.seq
                    yield ev
                if len(events) == MAX_PAGE:
                    continue  # more are waiting
                if conn is None:
                    await asyncio.sleep(fallback)
                    continue
                try:
                    async for _note in conn.notifies(timeout=fallback, stop_after=1):
                        pass
                except errors as err:
                    _log.warning("watch lost its listening connection; reconnecting",
                                 location=self.pg.location, error=first_line(err))
                    with contextlib.suppress(*errors):
                        await conn.close()
                    conn = None
        finally:
            if conn is not None:
                with contextlib.suppress(*errors):
                    await conn.close()

    def _events_after(self, seq: int) -> list[Event]:
        return list(self.ledger.events(after=seq, limit=MAX_PAGE))
