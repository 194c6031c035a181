"""`migrate` and `switch-backend` with the PostgreSQL backend, both directions (runs when
LEDGER_TEST_PG_URL is set; each test gets a scratch database)."""

from __future__ import annotations

import asyncio
import contextlib
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


class _Relay:
    """A TCP relay to the PostgreSQL server: a second address for it, which the test
    can take away (the server itself stays up for the other tests)."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self._upstream = (host, port)
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._upstream)
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: object, b: object) -> None:
        try:
            while data := a.recv(65536):  # type: ignore[attr-defined]
                b.sendall(data)  # type: ignore[attr-defined]
        except OSError:
            pass

    def close(self) -> None:
        """Refuse new connections and cut the open ones (shutdown first: a bare close
        leaves a thread blocked in accept or recv serving on)."""
        import socket

        for s in (self._listener, *self._socks):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_the_mirror_served_for_an_unreachable_dsn_does_not_show_its_password(
        tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL DSN named under `backend = "sqlite"` (MOLTIS_CONFIG_DB) opens the
    PostgreSQL ledger, whose effective `[config]` says `backend = "postgres"` and keeps
    the DSN as a secret (`dsn`, masked in every display). Once the server could not be
    reached, the head mirror served in its place said `backend = "sqlite"` and put the
    whole DSN, password included, in the plain `db` field, which `show` prints."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    relay = _Relay(str(parts.get("host", "localhost")), int(parts.get("port", 5432)))
    password = str(parts.get("password") or "pw-7c1e-never-shown")  # trust auth ignores it
    user = quote(str(parts.get("user", "")), safe="")
    relayed = (f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{relay.port}/"
               f"{parts['dbname']}")
    site: Site = make_site(tmp_path)
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "sqlite")
    monkeypatch.setenv("MOLTIS_CONFIG_DB", relayed)
    try:
        site.ok("migrate")
        site.ok("set", "server.port", "8080")
    finally:
        relay.close()
    store = open_store()
    try:
        assert store.backend_name == "mirror"
        served = asyncio.run(store.load_effective())
        assert (served.config.backend, served.server.port) == ("postgres", 8080)
        assert served.config.db is None
    finally:
        asyncio.run(store.close())
    shown = site.run("show", "--effective")
    assert password not in shown.out + shown.err
