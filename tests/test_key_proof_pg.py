"""Review findings R1/R3 of round 5 on PostgreSQL (LEDGER_TEST_PG_URL): the proof that
the held key is this ledger's (ledger.engine.key_proof) reads the same rows through
the PostgreSQL backend, and a keyed write refuses to re-key inside its transaction."""

from __future__ import annotations

import pytest

from ledger.errors import VerificationError
from ledger.schema import MoltisConfig
from ledger.stores.postgres_store import PostgresConfigStore
from tests.conftest import run
from tests.pg import fresh_pg_store

pytestmark = pytest.mark.postgres  # counted, and never skipped under CI=true


def _port(port: int):
    def fn(cfg: MoltisConfig) -> None:
        cfg.server.port = port
    return fn


def test_a_deleted_key_check_and_mac_row_is_refused_not_read_as_never_keyed(pg_url):
    import psycopg

    store = fresh_pg_store(pg_url)
    run(store.providers.set("openai", api_key="sk-pg-proof-1"))
    for port in (2000, 3000):
        run(store.update_raw(_port(port), actor="t"))
    gateway = PostgresConfigStore(pg_url, schema=store.pg.schema, pool_size=1)
    assert run(gateway.load_raw()).server.port == 3000
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DELETE FROM "{store.pg.schema}".ledger_meta WHERE key IN '
                     "('key_check', 'head_mac', 'head_signature')")
    fresh = PostgresConfigStore(pg_url, schema=store.pg.schema, pool_size=1)
    with pytest.raises(VerificationError, match="key_check is missing"):
        run(fresh.load_raw())
    # a running keyed store (it read the ledger before the rows went) does not re-key
    # it on its next write (the writer of the head it vouched for last goes on MAC'ing
    # its own heads: it knows them, and writes no key_check either)
    with pytest.raises(VerificationError, match="key_check is missing"):
        run(gateway.update_raw(_port(4000), actor="t"))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(f'SELECT key FROM "{store.pg.schema}".ledger_meta WHERE key IN '
                            "('key_check', 'head_mac')").fetchall()
        events = conn.execute(f'SELECT count(*) FROM "{store.pg.schema}".ledger_events'
                              ).fetchone()
    assert rows == [] and events is not None and events[0] == 3
