"""`migrate` and `switch-backend` with the PostgreSQL backend, both directions (runs when
LEDGER_TEST_PG_URL is set; each test gets a scratch database)."""

from __future__ import annotations

import asyncio
import os
import secrets
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from ledger.ops.open_store import open_store
from ledger.stores.file_store import FileConfigStore
from tests.operator import Site, make_site

pytestmark = pytest.mark.postgres


@pytest.fixture
def dsn() -> Iterator[str]:
    url = os.environ.get("LEDGER_TEST_PG_URL")
    if not url:
        pytest.skip("set LEDGER_TEST_PG_URL=postgresql://... to run the PostgreSQL tests: "
                    'eval "$(scripts/pg-test-server start)" starts a throwaway server')
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"ledger_switch_{secrets.token_hex(4)}"
    p = conninfo_to_dict(url)
    auth = quote(str(p.get("user", "")), safe="") + (
        f":{quote(str(p['password']), safe='')}" if p.get("password") else "")
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test role cannot CREATE DATABASE (scripts/pg-test-server's can)")
        try:
            yield f"postgresql://{auth}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{name}"
        finally:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def served() -> tuple[str, int]:
    async def read() -> tuple[str, int]:
        store = open_store()
        try:
            return store.backend_name, (await store.load_effective()).server.port
        finally:
            await store.close()

    return asyncio.run(read())


def test_postgres_both_ways(tmp_path: Path, dsn: str) -> None:
    site: Site = make_site(tmp_path)
    migrated = site.ok("--db", dsn, "migrate")
    assert "the gateway uses from now on: the postgres ledger" in migrated.out
    from psycopg.conninfo import conninfo_to_dict

    password = conninfo_to_dict(dsn).get("password")
    assert not password or str(password) not in migrated.out  # redacted
    config = tomllib.loads(site.toml.read_text())["config"]
    assert config["backend"] == "postgres" and config["dsn"] == dsn
    site.ok("set", "server.port", "8080")  # no --db: the CLI follows [config] too
    assert served() == ("postgres", 8080)
    site.ok("switch-backend", "file")
    assert served() == ("file", 8080)
    assert isinstance(open_store(), FileConfigStore)
    site.edit("port = 8080", "port = 8282")
    back = site.ok("--db", dsn, "switch-backend", "postgres")
    assert "proven: the postgres ledger" in back.out
    assert served() == ("postgres", 8282)
