"""Review r19: attacking the day's fixes (the head mark naming the ledger's location,
the PostgreSQL read-back under the append lock, bundles read until head and meta
agree, the split of export/open_store), with real processes, files and a real
PostgreSQL server (LEDGER_TEST_PG_URL).

Each test is a finding, marked xfail(strict=True) until it is fixed.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from ledger.cli.demo import moltis_env_only
from tests.migrated_site import cli_here, cli_process, site_env
from tests.pg import new_schema_name, register_schema
from tests.tcp_proxy import TcpProxy

# copies put back, a PostgreSQL schema rolled back, a writer partitioned for seconds in
# a real process: run by .ci/run
pytestmark = pytest.mark.torture

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------
# The head mark names the ledger's real path: a symlink in the data dir moves it


def test_an_older_copy_put_back_through_a_symlink_is_refused(tmp_path: Path) -> None:
    """What I did: a migrated site (key in the environment, head mark in the config
    dir); `set server.port 2000`, copied data/moltis.db to data/.old.db (as someone who
    can write the data dir: no key, no config dir), `set server.port 3000` and `4000`.
    Then removed data/moltis.db and made it a symlink to .old.db. (Copying .old.db
    over moltis.db is refused: exit 3, "older than one this key has seen".)

    What happened: `get server.port` says 2000, exit 0; `verify` says ok; a gateway's
    open_store() serves 2000: two writes are rolled back unnoticed. The mark now names
    os.path.realpath() of the ledger file (28bc327), so the same file reached through a
    link names another location and the mark is skipped as "another copy's"
    (head_mark.older_than_mark). At f5e28b0 (history id) the same attack was refused.
    What should happen: the ledger the installation names (data/moltis.db) is checked
    against the mark whatever file a link there points to (or a symlinked ledger file is
    refused), so the put-back copy is refused as before."""
    env = site_env(tmp_path)

    def ok(*args: str) -> None:
        done = cli_here(env, *args)
        assert done.returncode == 0, (args, done.stderr)

    data = tmp_path / "data"
    ok("set", "server.port", "2000")
    shutil.copyfile(data / "moltis.db", data / ".old.db")
    ok("set", "server.port", "3000")
    ok("set", "server.port", "4000")
    for old in data.glob("moltis.db*"):
        if not old.name.endswith(".lock"):
            old.unlink()
    (data / "moltis.db").symlink_to(".old.db")

    got = cli_process(env, "get", "server.port")
    assert got.returncode != 0 or got.stdout.strip() != "2000", \
        "the older copy behind the symlink is served: port 2000, exit 0"
    from ledger.errors import LedgerError
    from ledger.ops.open_store import open_store

    with moltis_env_only(env):
        try:
            store = open_store()
        except LedgerError:
            return
        try:
            served = asyncio.run(store.load_raw()).server.port
        finally:
            asyncio.run(store.close())
    assert served == 4000, f"a gateway serves port {served}"


# ---------------------------------------------------------------------------------
# PostgreSQL: a writer whose connection goes silent mid-transaction (no FIN)


class _SilentAfterLock(TcpProxy):
    """On a connection whose client sends a locked write's first message (BEGIN and the
    append advisory lock), that message and its reply pass; from the client's next
    message on, nothing more passes either way and both sockets stay open: a network
    partition, a hung middlebox (no FIN, no RST). The server's backend is left inside
    the transaction, holding the lock."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.silent = threading.Event()
        self.stop = threading.Event()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        locked = False
        while not self.stop.is_set():
            ready, _, _ = select.select([client, server], [], [], 0.2)
            if client in ready:
                data = client.recv(65536)
                if not data:
                    return
                if locked and not self.silent.is_set():
                    self.silent.set()
                    self.stop.wait()  # a partition: nothing more, sockets kept open
                    return
                if b"BEGIN" in data and b"advisory_xact_lock" in data \
                        and not self.silent.is_set():
                    locked = True
                server.sendall(data)
            if server in ready and not self._forward(server, client):
                return

    def close(self) -> None:
        self.stop.set()
        super().close()


@pytest.fixture
def silent_proxy(pg_url: str) -> Iterator[tuple[str, _SilentAfterLock]]:
    parts = urlsplit(pg_url)
    proxy = _SilentAfterLock(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    try:
        yield urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}")), proxy
    finally:
        proxy.close()


VICTIM = """
import asyncio, sys
from ledger.schema import ProviderConfig
from ledger.stores.postgres_store import PostgresConfigStore

async def main():
    store = PostgresConfigStore(sys.argv[1], schema=sys.argv[2], pool_size=2,
                                busy_timeout=2.0)
    def give_key(cfg):  # a secret: a locked write (BEGIN, lock, then the rest)
        cfg.providers["openai"] = ProviderConfig(api_key="sk-a-new-key-0123456789abcd")
    print("writing", flush=True)
    await store.update_raw(give_key, actor="gateway-a")
    print("written", flush=True)

asyncio.run(main())
"""


@pytest.mark.postgres
def test_a_writer_partitioned_mid_transaction_does_not_lock_out_every_other_writer(
        pg_url: str, silent_proxy: tuple[str, _SilentAfterLock], tmp_path: Path) -> None:
    """What I did: a PostgreSQL ledger (port 1000 written). Gateway A (its own process,
    busy_timeout 2 s) reaches the server through a proxy; it sets a provider key (a
    locked write: BEGIN + the append lock, then the rest and COMMIT). After the lock's
    reply reached A, the proxy passed nothing more and kept both sockets open (a
    network partition: no FIN, no RST). Gateway B, on a direct connection, then tried
    `server.port = 2000` every few seconds for 30 s.

    What happened: the server keeps A's backend "idle in transaction" holding the
    append advisory lock (pg_stat_activity); every write of B for 30 s fails with
    StoreBusyError "the ledger is locked by another writer": one partitioned gateway
    stops every gateway sharing the ledger from writing until the server's TCP
    keepalive gives up (about two hours by default; never behind a hung middlebox that
    acknowledges). A also never returns. What should happen: the ledger's sessions
    bound how long a transaction may sit idle holding the lock (PostgreSQL's
    idle_in_transaction_session_timeout, a few busy timeouts), so the server ends A's
    transaction and B's write goes through within that bound."""
    through, proxy = silent_proxy
    schema = new_schema_name()
    register_schema(pg_url, schema)
    from ledger.engine.vault import KeySource
    from ledger.errors import StoreBusyError
    from ledger.stores.postgres_store import PostgresConfigStore

    key_hex = os.urandom(32).hex()
    keys = KeySource(key=bytes.fromhex(key_hex), env={}, key_file=tmp_path / "b.key")

    async def first() -> None:
        store = PostgresConfigStore(pg_url, schema=schema, pool_size=2, keys=keys)
        try:
            await store.update_raw(lambda c: setattr(c.server, "port", 1000), actor="b")
        finally:
            await store.close()

    asyncio.run(first())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")},
           "MOLTIS_LEDGER_KEY": key_hex, "MOLTIS_CONFIG_DIR": str(tmp_path / "a"),
           "PYTHONPATH": str(ROOT)}
    (tmp_path / "a").mkdir()
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, through, schema], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proxy.silent.wait(30), "gateway A never took the lock"

        async def b_writes() -> str:
            store = PostgresConfigStore(pg_url, schema=schema, pool_size=2,
                                        busy_timeout=2.0, keys=keys)
            said = ""
            try:
                # the bound: A's session ends after idle_in_transaction_session_timeout
                # (30 s for its busy timeout of 2 s), then B gets the lock
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        await store.update_raw(lambda c: setattr(c.server, "port", 2000),
                                               actor="b")
                    except StoreBusyError as err:
                        said = str(err)
                        await asyncio.sleep(2)
                        continue
                    return "written"
            finally:
                await store.close()
            return said

        got = asyncio.run(b_writes())
        assert got == "written", f"B could not write for 60 s: {got}"
    finally:
        victim.kill()
        victim.communicate(timeout=30)
        proxy.close()


# ---------------------------------------------------------------------------------
# The head mark names a PostgreSQL ledger by its DSN as written


def _roll_back_to(url: str, schema: str, seq: int, meta: list[tuple[str, str]]) -> None:
    """What someone with the ledger role's rights (no key) does: put the schema back as
    it was at event `seq` (its events, head row and meta rows as they were then)."""
    import psycopg

    s = f'"{schema}"'
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(f"ALTER TABLE {s}.ledger_events DISABLE TRIGGER USER")
        conn.execute(f"DELETE FROM {s}.ledger_events WHERE seq > %s", (seq,))
        conn.execute(f"DELETE FROM {s}.ledger_snapshots WHERE seq > %s", (seq,))
        conn.execute(f"DELETE FROM {s}.ledger_secrets WHERE created_seq > %s", (seq,))
        conn.execute(f"UPDATE {s}.ledger_head h SET seq = e.seq, hash = e.hash, ts = e.ts "
                     f"FROM {s}.ledger_events e WHERE e.seq = %s", (seq,))
        conn.execute(f"DELETE FROM {s}.ledger_meta")
        for key, value in meta:
            conn.execute(f"INSERT INTO {s}.ledger_meta (key, value) VALUES (%s, %s)",
                         (key, value))
        conn.execute(f"ALTER TABLE {s}.ledger_events ENABLE TRIGGER USER")


@pytest.mark.postgres
def test_a_pg_ledger_rolled_back_is_refused_whatever_the_dsn_spelling(
        pg_url: str, tmp_path: Path) -> None:
    """What I did: a keyed PostgreSQL ledger written by the operator's CLI host
    (`postgresql://ledger@127.0.0.1:PORT/ledger`, its head mark in host/): port 1000,
    then (saving the meta rows, as a pg_dump would) 2000 and 3000; the writer closed
    (a checkpoint: the mark names event 3). Someone with the ledger role's rights but
    not the key put the schema back as it was at event 1 (events, head row, meta rows).
    A reader with the same key directory and the DSN as written is refused ("older
    than one this key has seen"). The same reader with the same database spelled
    `postgresql://ledger@localhost:PORT/ledger` (as a gateway's moltis.toml may name
    it, while the operator's shell says 127.0.0.1) was then asked.

    What happened: it serves port 1000: the rollback goes unnoticed. The mark's
    location is redact_dsn(dsn) + schema (28bc327: mark_location), the DSN's text
    rather than the database, so any other spelling (localhost/127.0.0.1, a port left
    implicit, the user from PGUSER) skips the mark as another ledger's. At f5e28b0 (the
    history id, stored in the database) both spellings refused it. What should happen:
    the same database and schema are recognised however the DSN names them (the
    server's identity: system identifier, database oid, schema), so the rollback is
    refused on every spelling."""
    from ledger.errors import LedgerError
    from tests.pg import keyed_reader_port, keyed_writer

    parts = urlsplit(pg_url)
    if parts.hostname != "127.0.0.1":
        pytest.skip("the test server is reached as 127.0.0.1")
    writer, key = keyed_writer(pg_url, tmp_path / "host")
    schema = writer.pg.schema

    async def write(port: int) -> None:
        await writer.update_raw(lambda c: setattr(c.server, "port", port), actor="ops")

    asyncio.run(write(1000))
    saved = sorted(writer.pg.meta_items().items())
    asyncio.run(write(2000))
    asyncio.run(write(3000))
    asyncio.run(writer.close())
    _roll_back_to(pg_url, schema, 1, saved)

    key_file = tmp_path / "host" / "ledger.key"
    same = keyed_reader_port(pg_url, schema, key, key_file)
    assert isinstance(same, LedgerError), f"control: the DSN as written serves {same}"
    other = urlunsplit(parts._replace(netloc=parts.netloc.replace("127.0.0.1", "localhost")))
    served = keyed_reader_port(other, schema, key, key_file)
    assert isinstance(served, LedgerError), \
        f"the rolled-back ledger is served through {redact(other)}: port {served}"


def redact(dsn: str) -> str:
    from ledger.backends.postgres import redact_dsn

    return redact_dsn(dsn)
