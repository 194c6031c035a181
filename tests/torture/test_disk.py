"""Promise 5: full disks and read-only media.

Full disk: the data directory on a tiny tmpfs (`mount -t tmpfs -o size=256k`, as root),
and, always too, a writer process under RLIMIT_FSIZE with SIGXFSZ ignored (the route
that needs no privileges). Writes go on until the disk is full: they fail with a
StoreError saying so (CLI: exit 1), the ledger stays readable and verifiable (a new
writer can still open it) with every acknowledged write present, and writing resumes
once there is room. The same for the file store: the file is the last acknowledged
version, intact, and no temp file is left.

Read-only media (`mount -o remount,ro`): the SQLite ledger opens (immutable, or reading
the WAL a crashed writer left), reads and verifies, with every acknowledged write;
writes raise ReadOnlyError (CLI: exit 5); the file store reads and refuses writes the
same way. Mounts are undone in a finally.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import ReadOnlyError, SqliteConfigStore, StoreError
from ledger.engine.vault import KeySource
from ledger.errors import LedgerError
from ledger.stores.file_providers import FileProviderStore
from ledger.stores.file_store import FileConfigStore
from tests.conftest import run
from tests.torture import stats
from tests.torture.helpers import ROOT, Worker, run_cli

pytestmark = pytest.mark.torture

FSIZE_LIMIT = 200_000  # bytes: the RLIMIT_FSIZE route's "disk"


def _mount(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["mount", *args], capture_output=True, timeout=60, check=False)


@contextlib.contextmanager
def tiny_fs(path: Path, size: str) -> Iterator[str | None]:
    """A tmpfs of `size` mounted at `path`; yields None, or why it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield "mounting a tmpfs needs root and mount(8)"
        return
    done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    if done.returncode != 0:
        yield f"mount -t tmpfs failed: {done.stderr.decode(errors='replace').strip()}"
        return
    try:
        yield None
    finally:
        _mount("-o", "remount,rw", str(path))
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def skip_unmountable(reason: str) -> None:
    """Only when mounting is impossible (in CI too): the RLIMIT_FSIZE test below is
    the route that needs no mount, and it always runs."""
    pytest.skip(f"{reason}; test_full_disk_by_rlimit_fsize covers a full disk without it")


def fill_ledger(store: SqliteConfigStore) -> tuple[dict[int, str], list[StoreError]]:
    """Append ~2 KB events until the disk is full, then a few small ones."""
    acked: dict[int, str] = {}
    errors: list[StoreError] = []
    i = 0
    while len(errors) < 4:
        value = f"{i}:" + "v" * (10 if errors else 2000)
        try:
            commit = store.ledger.edit({("torture", f"k{i}"): value}, actor="filler")
        except LedgerError as err:
            errors.append(err)  # type: ignore[arg-type]  (checked below)
        else:
            acked[commit.seq] = value
        i += 1
        assert i < 10_000, "the disk never filled up"
    assert all(isinstance(e, StoreError) for e in errors), errors
    return acked, errors


def check_ledger(db: Path, key: bytes, acked: dict[int, str], *, read_only: bool = False
                 ) -> SqliteConfigStore:
    store = SqliteConfigStore(db, keys=KeySource(key=key), read_only=read_only)
    report = store.ledger.verify()
    assert report.ok, report.problem
    config = store.ledger.head_state().config
    for seq, value in acked.items():
        assert seq <= report.head_seq, f"acknowledged seq {seq} is gone"
        assert value in config["torture"].values() or any(
            c.value == value for c in store.ledger.event(seq).changes), seq
    return store


def test_full_disk_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    key = os.urandom(32)
    with tiny_fs(mnt, "256k") as why:
        if why:
            skip_unmountable(why)
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\0" * 32768)
        db = mnt / "moltis.db"
        store = SqliteConfigStore(db, keys=KeySource(key=key))
        acked, errors = fill_ledger(store)
        for err in errors:
            assert "disk is full" in str(err) and str(db) in str(err), err
        stats.add("disk_full_refused", len(errors))
        for attempt in (lambda: run(store.update_raw(lambda c: setattr(c.server, "port", 7))),
                        lambda: run(store.providers.set("openai", api_key="sk-full"))):
            with pytest.raises(StoreError, match="disk is full"):
                attempt()
            stats.add("disk_full_refused")
        env = {**os.environ, "MOLTIS_LEDGER_KEY": key.hex()}
        res = run_cli("--db", str(db), "set", "server.port", "9", env=env)
        assert res.code == 1 and "disk is full" in res.err and "Traceback" not in res.err, res
        stats.add("disk_full_refused")
        # still readable and verifiable, by this writer, a new writer, a reader, the CLI
        assert store.ledger.verify().ok
        for read_only in (False, True):
            check_ledger(db, key, acked, read_only=read_only).ledger.close()
        for args in (("verify",), ("show",), ("log", "--limit", "3")):
            res = run_cli("--db", str(db), *args, env=env)
            assert res.code == 0, (args, res)
        # and writing resumes once there is room
        ballast.unlink()
        commit = store.ledger.edit({("server", "port"): 9}, actor="after")
        assert commit.appended
        assert store.ledger.verify().ok
        store.ledger.close()

        # the file store on the same full disk: the file stays the last good version
        for f in list(mnt.iterdir()):
            f.unlink()
        conf = mnt / "moltis.toml"
        conf.write_text("# the operator's comments\n[server]\nport = 8080\n")
        fs = FileConfigStore(conf)
        last = conf.read_bytes()
        refusals: list[LedgerError] = []
        for i in range(1000):
            try:
                run(fs.edit({("torture", f"k{i}"): "v" * 20000}))
            except LedgerError as err:
                refusals.append(err)
                if len(refusals) == 3:
                    break
            else:
                last = conf.read_bytes()
        assert len(refusals) == 3
        assert all(isinstance(e, StoreError) and "disk is full" in str(e) for e in refusals)
        assert conf.read_bytes() == last and "port = 8080" in last.decode()
        assert run(FileConfigStore(conf).raw_document())["server"]["port"] == 8080
        keys = mnt / "provider_keys.json"
        with pytest.raises(StoreError, match="disk is full"):
            run(FileProviderStore(keys).set("openai", api_key="k" * 200_000))
        assert not keys.exists()
        stats.add("disk_full_refused", len(refusals) + 1)
        assert not [p.name for p in mnt.iterdir() if p.name.endswith(".tmp")]


def _limited() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def test_full_disk_by_rlimit_fsize(tmp_path: Path) -> None:
    """The unprivileged route: the writers run with a file size limit."""
    key = os.urandom(32)
    env = {**os.environ, "MOLTIS_LEDGER_KEY": key.hex()}
    db = tmp_path / "moltis.db"
    conf = tmp_path / "conf" / "moltis.toml"
    conf.parent.mkdir()
    conf.write_text("# kept\n[server]\nport = 8080\n")
    reports = {}
    for kind, target in (("sqlite", db), ("file", conf)):
        proc = subprocess.run([sys.executable, "-m", "tests.workers", "fill", kind, str(target)],
                              cwd=ROOT, env=env, capture_output=True, timeout=300,
                              preexec_fn=_limited, check=False)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        reports[kind] = json.loads(proc.stdout)
        for name, message in reports[kind]["errors"]:
            assert name == "StoreError" and "disk is full" in message, (kind, message)
        stats.add("disk_full_refused", len(reports[kind]["errors"]))
    acked = {int(seq): f"k{k[1:]}" for seq, k in reports["sqlite"]["acked"].items()}
    store = SqliteConfigStore(db, keys=KeySource(key=key))
    assert store.ledger.verify().ok
    config = store.ledger.head_state().config["torture"]
    assert set(acked.values()) <= set(config), "acknowledged writes are missing"
    store.ledger.close()
    # a write the file size limit cannot hold, through the CLI under the same limit
    res = subprocess.run([sys.executable, "-m", "ledger", "--db", str(db), "set",
                          "identity.name", "-"], input=b"n" * (FSIZE_LIMIT + 50_000) + b"\n",
                         env=env, capture_output=True, timeout=120, preexec_fn=_limited,
                         check=False)
    assert res.returncode == 1 and b"disk is full" in res.stderr, res.stderr
    assert run_cli("--db", str(db), "verify", env=env).code == 0
    stats.add("disk_full_refused")
    doc = run(FileConfigStore(conf).raw_document())
    assert doc["torture"] == reports["file"]["acked"] and doc["server"]["port"] == 8080
    assert conf.read_text().startswith("# kept\n")
    assert not [p.name for p in conf.parent.iterdir() if p.name.endswith(".tmp")]


def test_read_only_media(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    key = os.urandom(32)
    env = {**os.environ, "MOLTIS_LEDGER_KEY": key.hex()}
    with tiny_fs(mnt, "8m") as why:
        if why:
            pytest.skip(f"read-only media cannot be simulated: {why} (as root, permission "
                        "bits do not stop writes)")
        db = mnt / "moltis.db"
        store = SqliteConfigStore(db, keys=KeySource(key=key))
        run(store.providers.set("openai", api_key="sk-ro-1"))
        store.ledger.close()
        # a writer killed before it folded its WAL into the database file
        phase = mnt / "phase"
        worker = Worker(["crash-append", "sqlite", str(db), str(phase), "7"], env,
                        tmp_path / "worker.log")
        assert worker.ready.wait(60)
        while len(worker.lines) < 12:
            assert worker.proc.poll() is None
            time.sleep(0.01)
        worker.kill()
        phase.unlink()
        acked = {json.loads(line)["seq"] for line in worker.lines}
        assert Path(f"{db}-wal").stat().st_size > 0
        noshm = mnt / "noshm"
        noshm.mkdir()
        for suffix in ("", "-wal"):
            shutil.copy(f"{db}{suffix}", f"{noshm / 'moltis.db'}{suffix}")
        conf = mnt / "moltis.toml"
        keys = mnt / "provider_keys.json"
        run(FileConfigStore(conf).update_raw(lambda c: setattr(c.server, "port", 8080)))
        run(FileProviderStore(keys).set("openai", api_key="sk-file"))
        files = {p: p.read_bytes() for p in mnt.rglob("*") if p.is_file()}
        remount = _mount("-o", "remount,ro", str(mnt))
        assert remount.returncode == 0, remount.stderr

        ro = SqliteConfigStore(db, keys=KeySource(key=key))
        report = ro.ledger.verify()
        assert report.ok and max(acked) <= report.head_seq, (report, max(acked))
        for seq in acked:
            assert ro.ledger.event(seq) is not None
        assert "openai" in run(ro.providers.list())
        refusals = [
            lambda: ro.ledger.edit({("server", "port"): 1}),
            lambda: run(ro.update_raw(lambda c: setattr(c.server, "port", 2))),
            lambda: run(ro.providers.set("openai", api_key="sk-ro-2")),
            lambda: SqliteConfigStore(mnt / "new.db"),
            lambda: run(FileConfigStore(conf).update_raw(lambda c: setattr(c.server, "port", 3))),
            lambda: run(FileProviderStore(keys).set("openai", api_key="sk-ro-3")),
        ]
        for attempt in refusals:
            with pytest.raises(ReadOnlyError):
                attempt()
            stats.add("read_only_refused")
        ro.ledger.close()
        res = run_cli("--db", str(db), "set", "server.port", "9", env=env)
        assert res.code == 5 and "read-only" in res.err and "Traceback" not in res.err, res
        stats.add("read_only_refused")
        for args in (("verify",), ("show",), ("providers", "list")):
            res = run_cli("--db", str(db), *args, env=env)
            assert res.code == 0, (args, res)
        assert run(FileConfigStore(conf).load_raw()).server.port == 8080
        assert "openai" in run(FileProviderStore(keys).list())
        # a WAL whose -shm index is gone cannot be read there: a clear error, no stale read
        with pytest.raises(StoreError, match=r"moltis\.db-wal"):
            SqliteConfigStore(noshm / "moltis.db")
        assert {p: p.read_bytes() for p in files} == files
