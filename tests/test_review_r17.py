"""Review r17: trying to make the ledger lose or misreport a write, with real processes,
real files and a real PostgreSQL server (LEDGER_TEST_PG_URL).

The rule: an acknowledged write is on disk, or the caller got an error; no write is
lost, duplicated or half-applied; every process sees a consistent head; a failing
write's error is clear and names what to do.

Each test is a finding, marked xfail(strict=True) until it is fixed.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.migrated_site import cli_here, cli_process
from tests.pg import new_schema_name, register_schema
from tests.tcp_proxy import TcpProxy
from tests.test_review_r13 import dsn  # noqa: F401 (the fixture: a database of its own)

# real processes racing on one file, and PostgreSQL connections cut mid-write: run by .ci/run
pytestmark = pytest.mark.torture

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------
# Helpers

# `python -c HOOKED NAME SCRIPT ARGS...`: the real CLI (`moltis-ledger ARGS`) in its own
# process; the first time it opens a file whose name holds NAME for writing, the Python
# SCRIPT runs in another process (an operator's editor saving moltis.toml) and must
# succeed before the CLI goes on. No library code is replaced.
HOOKED = """
import os, subprocess, sys
name, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
fired = []
def hook(event, a):
    if fired or event != "open" or len(a) < 3 or not isinstance(a[2], int):
        return
    if not a[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        return
    if isinstance(a[0], (str, bytes, os.PathLike)) and name in os.path.basename(os.fsdecode(a[0])):
        fired.append(1)
        subprocess.run([sys.executable, "-c", script], check=True)
from ledger.cli import run
sys.addaudithook(hook)
code = run(args)
if not fired:
    sys.stderr.write("[hook] never fired\\n")
    code = 98
sys.exit(code)
"""


def _hooked_cli(env: dict[str, str], name: str, script: str, *args: str
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HOOKED, name, script, *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def _two_secret_site(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A migrated SQLite site whose moltis.toml held two provider keys (now masks)."""
    config, data = tmp_path / "config", tmp_path / "data"
    config.mkdir()
    data.mkdir()
    toml = config / "moltis.toml"
    toml.write_text('[server]\nport = 13131\n'
                    '[providers.openai]\napi_key = "sk-openai-aaaaaaaaaaaaaaaaaaaaaaaa"\n'
                    '[providers.anthropic]\napi_key = "sk-ant-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"\n',
                    encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
    env.update(MOLTIS_CONFIG_DIR=str(config), MOLTIS_DATA_DIR=str(data),
               MOLTIS_LEDGER_KEY=secrets.token_hex(32), MOLTIS_LEDGER_ACTOR="tester@r17",
               PYTHONPATH=str(ROOT))
    done = cli_here(env, "migrate")
    assert done.returncode == 0, done.stderr
    assert "<secret fp:" in toml.read_text(encoding="utf-8")
    return env, toml


def _type_in_a_new_key(toml: Path) -> str:
    """The operator types a new OpenAI key over its mask (the anthropic mask stays);
    returns the file's text."""
    text = re.sub(r'(\[providers\.openai\]\napi_key = )"[^"]*"',
                  r'\1"sk-NEW-TYPED-IN-0123456789abcdef"', toml.read_text(encoding="utf-8"))
    toml.write_text(text, encoding="utf-8")
    return text


def _save_script(toml: Path, text: str) -> str:
    return f"open({str(toml)!r}, 'w', encoding='utf-8').write({text!r})"


class _ReplyDropper(TcpProxy):
    """Once `arm()` was called, the server's reply to the next Bind message the client
    sends (an extended-protocol statement: the append) is dropped and both connections
    are closed: the server ran the statement, the client never hears back (a network
    cut, a server crash after its commit, a killed pgbouncer). With `down_after_drop`
    every other connection is cut too and no new one gets through while `down`."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.bound = threading.Event()
        self.dropped = threading.Event()
        self.down_after_drop = False

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        while True:
            ready, _, _ = select.select([client, server], [], [])
            if client in ready:
                data = client.recv(65536)
                if not data:
                    return
                if self.armed.is_set() and data[:1] == b"B":
                    self.bound.set()
                server.sendall(data)
            if server in ready:
                data = server.recv(65536)
                if not data:
                    return
                if self.bound.is_set() and not self.dropped.is_set():
                    if self.down_after_drop:
                        self.cut_all()
                    self.dropped.set()
                    return
                client.sendall(data)


@pytest.fixture
def pg_cut(pg_url: str) -> Iterator[tuple[str, str, _ReplyDropper]]:
    """(direct DSN, DSN through a reply-dropping proxy, the proxy)."""
    parts = urlsplit(pg_url)
    proxy = _ReplyDropper(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    through = urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}"))
    try:
        yield pg_url, through, proxy
    finally:
        proxy.close()


def _pg_store(url: str, schema: str, busy_timeout: float = 5.0) -> Any:
    from ledger.stores.postgres_store import PostgresConfigStore

    return PostgresConfigStore(url, schema=schema, pool_size=1, busy_timeout=busy_timeout)


async def _truth(url: str, schema: str) -> tuple[int, int]:
    """What a fresh store on the server says: (head seq, server.port)."""
    store = _pg_store(url, schema)
    try:
        return await store.head_seq(), (await store.load_raw()).server.port
    finally:
        await store.close()


# ---------------------------------------------------------------------------------
# Hand edits of moltis.toml racing the re-masking of a typed-in secret


def test_a_save_of_moltis_toml_during_the_re_masking_is_not_lost(tmp_path: Path) -> None:
    """What I did: on a migrated site (two provider keys masked in moltis.toml), typed
    a new OpenAI key over its mask, then ran `moltis-ledger get server.port`, which
    imports the hand edit and masks the typed-in key again. While it wrote the sealed
    backup of the file (after reading it, before replacing it), the operator's editor
    saved moltis.toml again with `port = 9999` (a real second process).

    What happened: the CLI replaced moltis.toml with the text it had read before that
    save: `port = 9999` is gone from the file and never reached the ledger; exit 0,
    no warning. What should happen: a save made while the file is re-masked is not
    overwritten (re-check the file is still what was read before replacing it, and
    leave it alone otherwise), so the edit is imported like any hand edit."""
    env, toml = _two_secret_site(tmp_path)
    text = _type_in_a_new_key(toml)
    saved = text.replace("port = 13131", "port = 9999")
    got = _hooked_cli(env, ".sealed", _save_script(toml, saved), "get", "server.port")
    assert got.returncode == 0, got.stderr
    after = cli_process(env, "get", "server.port")
    assert after.returncode == 0, after.stderr
    # the operator's save survives somewhere: in the file, and (imported) in the ledger
    assert "port = 9999" in toml.read_text(encoding="utf-8")
    assert after.stdout.strip() == "9999"


def test_a_hand_edit_saved_after_an_import_is_imported_too(tmp_path: Path) -> None:
    """What I did: as above, but the editor saved `port = 9999` right after the CLI
    committed the import of the typed-in key (at its head-mirror write), before the
    re-masking re-read the file.

    What happened: the re-masking read the newer file, masked the key, and recorded that
    file as in step with the ledger: the file says `port = 9999`, the ledger serves 13131
    for ever after (every later command, `check`: "ok: no problems"), and the edit was
    never imported nor reported. The docs: "a hand edit of moltis.toml is imported as an
    audited event, never silently ignored". What should happen: only the bytes that were
    imported are recorded as in step; the newer edit is imported by the next open."""
    env, toml = _two_secret_site(tmp_path)
    text = _type_in_a_new_key(toml)
    saved = text.replace("port = 13131", "port = 9999")
    got = _hooked_cli(env, "ledger-head", _save_script(toml, saved), "get", "server.port")
    assert got.returncode == 0, got.stderr
    assert "port = 9999" in toml.read_text(encoding="utf-8")
    after = cli_process(env, "get", "server.port")
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "9999", "the file and the ledger disagree, silently"


# ---------------------------------------------------------------------------------
# PostgreSQL: the reply to a committed append never arrives


@pytest.mark.postgres
def test_a_cancelled_pg_write_whose_reply_was_lost_is_not_reported_unwritten(
        pg_cut: tuple[str, str, _ReplyDropper]) -> None:
    """What I did: a PostgresConfigStore connected through a TCP proxy; an update_raw
    setting server.port = 2000, its task cancelled while the write was running; the
    server executed the append (one autocommit statement), the proxy dropped its reply
    and closed the connection (a network cut or a crash after the commit).

    What happened: the task got CancelledError("cancelled; the write was refused and
    nothing was written: ... cannot reach the database (writing) ...") while the server
    holds the write (seq 2, port 2000). What should happen: the contract promises the
    cancelled task learns what became of its write; when the connection died after the
    statement was sent, that is "unknown: it may have been committed", never "nothing
    was written"."""
    direct, through, proxy = pg_cut
    schema = new_schema_name()
    register_schema(direct, schema)
    told = _write_through_a_cut(proxy, through, schema, cancel=True)
    assert proxy.dropped.is_set()
    assert asyncio.run(_truth(direct, schema)) == (2, 2000)  # the server has the write
    assert "nothing was written" not in told, told


def _write_through_a_cut(proxy: _ReplyDropper, through: str, schema: str,
                         cancel: bool = False) -> str:
    """update_raw(server.port = 2000) through the proxy, whose reply to the append is
    dropped after the server ran it (with `cancel`, its task cancelled meanwhile):
    "acknowledged", or the error's message."""
    async def main() -> str:
        store = _pg_store(through, schema, busy_timeout=1.0)
        try:
            await store.update_raw(lambda c: setattr(c.server, "port", 1000),
                                   actor="t", reason="first")

            def fn(cfg: Any) -> None:
                proxy.arm()
                cfg.server.port = 2000

            task = asyncio.ensure_future(store.update_raw(fn, actor="t", reason="cut"))
            if cancel:
                while not proxy.armed.is_set():
                    await asyncio.sleep(0.001)
                task.cancel()
            try:
                await task
            except (Exception, asyncio.CancelledError) as err:  # the message is tested
                return str(err)
            return "acknowledged"
        finally:
            proxy.down = False  # back up: the store closes as usual
            await store.close()

    return asyncio.run(main())


@pytest.mark.postgres
def test_a_pg_write_whose_reply_was_lost_is_acknowledged_once_read_back(
        pg_cut: tuple[str, str, _ReplyDropper]) -> None:
    """What I did: update_raw(server.port = 2000) through the proxy, whose reply to the
    append was dropped after the server ran it.

    What happened: StoreError "...: cannot reach the database (writing): consuming input
    failed: server closed the connection unexpectedly"; the write is committed (seq 2).
    An operator (or a gateway's retry loop) reads that as a failed write and repeats it,
    which for any non-idempotent `fn` (appending to a list, a counter, a rollback)
    duplicates it. What should happen: the store reads the log back on a new connection
    and finds its event there (its hash): the write is acknowledged, once."""
    direct, through, proxy = pg_cut
    schema = new_schema_name()
    register_schema(direct, schema)
    told = _write_through_a_cut(proxy, through, schema)
    assert proxy.dropped.is_set()
    assert asyncio.run(_truth(direct, schema)) == (2, 2000)
    assert told == "acknowledged", told


@pytest.mark.postgres
def test_a_pg_write_whose_reply_was_lost_and_cannot_be_read_back_may_have_committed(
        pg_cut: tuple[str, str, _ReplyDropper]) -> None:
    """As above, and the network stays down: the log cannot be read back. The error
    says the write may have been committed and how to find out before repeating it,
    never "nothing was written"."""
    direct, through, proxy = pg_cut
    proxy.down_after_drop = True
    schema = new_schema_name()
    register_schema(direct, schema)
    told = _write_through_a_cut(proxy, through, schema)
    assert proxy.dropped.is_set()
    assert asyncio.run(_truth(direct, schema)) == (2, 2000)
    assert "may have been committed" in told and "log --limit 1" in told, told
    assert "nothing was written" not in told, told


# ---------------------------------------------------------------------------------
# The file store: one moltis.toml reached by two names

COUNTER = """
import asyncio, sys
from ledger.stores.file_store import FileConfigStore

async def main(path, n):
    store = FileConfigStore(path)

    def bump(cfg):
        cfg.server.port = cfg.server.port + 1

    done = await asyncio.gather(*(store.update_raw(bump, actor="counter") for _ in range(n)),
                                return_exceptions=True)
    acked = sum(1 for d in done if not isinstance(d, BaseException) and d.appended)
    failed = [str(d) for d in done if isinstance(d, BaseException)]
    print(acked, len(failed), failed[:1])

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_two_gateways_sharing_moltis_toml_by_symlink_lose_no_write(tmp_path: Path) -> None:
    """What I did: one moltis.toml in a shared folder, and two gateways' config dirs
    each holding a symlink to it (the file store keeps a symlinked file a symlink and
    replaces its target). Two processes, one per config dir, each ran 30 concurrent
    `update_raw` calls adding 1 to server.port (starting at 1000).

    What happened: acknowledged increments were lost (the final port is below 1000 + the
    acknowledged count), and a writer failed with "cannot write: No such file or
    directory; the file is unchanged": the lock is `<link path>.lock`, one per link, while
    the temp files (and their clean-up of stale temps, which removed the other writer's
    in-flight temp) are next to the target. What should happen: the lock belongs to the
    file that is replaced (its real path), so every acknowledged write is in the file
    and neither process fails."""
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "moltis.toml"
    target.write_text("[server]\nport = 1000\n", encoding="utf-8")
    links = []
    for name in ("gw1", "gw2"):
        (tmp_path / name).mkdir()
        link = tmp_path / name / "moltis.toml"
        link.symlink_to(target)
        links.append(link)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER, str(link), "30"], env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for link in links]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-600:] for _, err in outs]
    acked = sum(int(out.split()[0]) for out, _ in outs)
    port = int(re.search(r"port = (\d+)", target.read_text(encoding="utf-8"))[1])
    assert port == 1000 + acked, ("acknowledged increments lost", port, acked, outs)
    assert acked == 60, ("writes failed", outs)


# ---------------------------------------------------------------------------------
# Cancelling a queued write of the file store

CANCEL_QUEUED = """
import asyncio, gc, sys, time
from ledger.stores.file_store import FileConfigStore

async def main(path):
    store = FileConfigStore(path)

    def slow(cfg):
        time.sleep(0.2)
        cfg.server.port = cfg.server.port + 1

    tasks = [asyncio.ensure_future(store.update_raw(slow, actor="x")) for _ in range(12)]
    await asyncio.sleep(0.05)
    for task in tasks[-3:]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    print(sum(1 for d in done if isinstance(d, asyncio.CancelledError)))
    await asyncio.sleep(0.5)
    gc.collect()

asyncio.run(main(sys.argv[1]))
"""


def test_a_withdrawn_file_store_write_logs_no_error(tmp_path: Path) -> None:
    """What I did: a FileConfigStore (the gateway on `backend = "file"`), 12 concurrent
    update_raw calls whose fn takes 0.2 s (more than the default executor's threads),
    and the last 3 tasks cancelled while still queued (a request that timed out).

    What happened: the three are withdrawn correctly (CancelledError, nothing written),
    but asyncio logs "Future exception was never retrieved ... CancelledError: withdrawn
    before it started" with a traceback for each, at ERROR level in the gateway's log:
    an operator sees errors for writes that behaved exactly as documented. What should
    happen: a withdrawn write leaves nothing to report (run_write retrieves or never sets
    the executor future's exception). The PostgreSQL store shares run_write."""
    path = tmp_path / "moltis.toml"
    path.write_text("[server]\nport = 1000\n", encoding="utf-8")
    got = subprocess.run([sys.executable, "-c", CANCEL_QUEUED, str(path)],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.split() == ["3"]
    assert "port = 1009" in path.read_text(encoding="utf-8")
    assert "never retrieved" not in got.stderr, got.stderr[-1500:]


# ---------------------------------------------------------------------------------
# PostgreSQL: the server dropped the store's connections (restart, failover, admin)


def _terminate_ledger_backends(url: str) -> int:
    """pg_terminate_backend every connection of the ledger's pool in this test's own
    database (what a server restart or a failover does to them)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
            "datname = current_database() AND pid <> pg_backend_pid() AND "
            "application_name = 'moltis-config-ledger'").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
def test_pg_writes_after_the_server_dropped_the_pool_are_acknowledged(
        dsn: str) -> None:  # noqa: F811 (the fixture)
    """What I did: a PostgresConfigStore (default pool) wrote once; then every backend
    of its pool was ended with pg_terminate_backend (what a server restart, a failover
    or an operator's cleanup does); the server stays up. Then three update_raw calls,
    one after another.

    What happened: the first one or two (as many as the pool held) failed with
    StoreError "...: writing failed: terminating connection due to administrator
    command" (nothing was written; the next succeeded): after every PostgreSQL
    restart a gateway's next writes fail, with a message that says neither whether
    anything was written nor what to do. What should
    happen: a connection the server closed before the write was sent is replaced (the
    pool's check, or one retry of a write that never reached the server), so writes to
    a server that is up are acknowledged; failing that, the error names the lost
    connection, says nothing was written and to retry."""
    schema = new_schema_name()

    async def main() -> list[str]:
        store = _pg_store(dsn, schema)
        store_outcomes: list[str] = []
        try:
            await store.update_raw(lambda c: setattr(c.server, "port", 1000), actor="t")
            await store.head_seq()
            assert _terminate_ledger_backends(dsn) >= 1
            for _ in range(3):
                try:
                    commit = await store.update_raw(
                        lambda c: setattr(c.server, "port", c.server.port + 1), actor="t")
                    store_outcomes.append(f"seq {commit.seq}")
                except Exception as err:  # the outcome is what is tested
                    store_outcomes.append(str(err))
        finally:
            await store.close()
        return store_outcomes

    outcomes = asyncio.run(main())
    assert outcomes == ["seq 2", "seq 3", "seq 4"], outcomes
    assert asyncio.run(_truth(dsn, schema)) == (4, 1003)
