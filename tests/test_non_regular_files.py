"""A FIFO, a device, a socket or a directory where the library reads an operator's file
(moltis.toml, a migration backup, a bundle to import, the ledger key) is refused with
an error naming the file and what it is, never waited on or read without end.

The FIFO cases run in this process with a guard: a thread opens the FIFO's write end
and closes it, so a reader that waits on the FIFO gets an empty file instead of
hanging the suite (and then fails the assertions: an empty file is not an error).
/dev/zero (size 0, no end) is read in a child process under a memory limit, which
reports a reader that does not stop instead of filling the machine's memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import UnsafePathError
from ledger.files.safe_io import read_file
from tests.operator import Result, invoke, make_site


@pytest.fixture
def fifo_guard() -> Iterator[list[Path]]:
    """FIFOs added to the list get a writer that opens and closes them, again and
    again, so a reader blocked on one sees an empty file instead of blocking the suite
    for ever."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def release(path: Path) -> None:
        while not stop.is_set():
            try:
                os.close(os.open(path, os.O_WRONLY))  # returns once a reader opened it
            except OSError:
                return

    class Guarded(list[Path]):
        def append(self, path: Path) -> None:
            os.mkfifo(path)
            # a second name for the FIFO, which stays if the code replaces the first
            held = path.with_name(f".{path.name}.guard")
            os.link(path, held)
            super().append(held)
            thread = threading.Thread(target=release, args=(held,), daemon=True)
            thread.start()
            threads.append(thread)

    guarded = Guarded()
    yield guarded
    stop.set()
    for path in guarded:  # the writer waits for a reader: give it one, then it stops
        while any(t.is_alive() for t in threads):
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                break
            for thread in threads:
                thread.join(0.01)
    for thread in threads:
        thread.join()


def refused(result: Result, path: Path, what: str) -> None:
    assert result.code != 0, result
    assert str(path) in result.err and what in result.err, result.err
    assert "Traceback" not in result.err, result.err


def test_read_file_refuses_what_is_not_a_regular_file(tmp_path: Path,
                                                      fifo_guard: list[Path]) -> None:
    fifo = tmp_path / "moltis.toml"
    fifo_guard.append(fifo)
    with pytest.raises(UnsafePathError, match=r"moltis\.toml: refusing to read: it is a FIFO"):
        read_file(fifo)
    with pytest.raises(UnsafePathError, match="it is a directory"):
        read_file(tmp_path)
    # a link is followed as before; what it leads to is judged
    link = tmp_path / "null.toml"
    link.symlink_to("/dev/null")
    with pytest.raises(UnsafePathError, match=r"null\.toml: refusing to read: it is a character"):
        read_file(link)
    plain = tmp_path / "plain.toml"
    plain.write_bytes(b"a = 1\n")
    (tmp_path / "link.toml").symlink_to(plain)
    assert read_file(tmp_path / "link.toml") == b"a = 1\n"
    assert read_file(tmp_path / "missing.toml") is None


def test_fifo_as_moltis_toml_is_refused_by_migrate_and_check(tmp_path: Path,
                                                             fifo_guard: list[Path]) -> None:
    site = make_site(tmp_path)
    site.toml.unlink()
    fifo_guard.append(site.toml)
    refused(invoke(["migrate"]), site.toml, "FIFO")
    refused(invoke(["check", "--file", str(site.toml)]), site.toml, "FIFO")


def test_fifo_in_a_migration_backup_is_refused(tmp_path: Path,
                                               fifo_guard: list[Path]) -> None:
    site = make_site(tmp_path)
    assert invoke(["migrate"]).code == 0
    (backup,) = (site.data_dir / "backups").iterdir()
    stored = next(p for p in backup.iterdir() if p.name != "manifest.json")
    stored.unlink()
    fifo_guard.append(stored)
    refused(invoke(["unseal-backup", str(backup), "-o", str(tmp_path / "out")]), stored, "FIFO")


def test_fifo_as_a_bundle_is_refused_by_import_and_verify(tmp_path: Path,
                                                          fifo_guard: list[Path]) -> None:
    bundle = tmp_path / "ledger.bundle"
    fifo_guard.append(bundle)
    refused(invoke(["verify-bundle", str(bundle)]), bundle, "FIFO")
    refused(invoke(["--db", str(tmp_path / "new.db"), "import-bundle", str(bundle)]),
            bundle, "FIFO")


def test_fifo_as_the_key_file_is_refused(tmp_path: Path, fifo_guard: list[Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    make_site(tmp_path)
    assert invoke(["migrate"]).code == 0
    key = tmp_path / "ledger.key"
    fifo_guard.append(key)
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(key))
    refused(invoke(["get", "server.port"]), key, "FIFO")


_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a reader without end fails
from tests.operator import invoke
result = invoke(sys.argv[1:])
print(json.dumps([result.code, result.err]))
"""


def _in_child(tmp_path: Path, *args: str) -> tuple[int, str]:
    import json

    env = {**os.environ, "MOLTIS_CONFIG_DIR": str(tmp_path / "config"),
           "MOLTIS_DATA_DIR": str(tmp_path / "data")}
    # the timeout is only a guard: a reader that does not end is the failure
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=Path(__file__).parent.parent,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    code, err = json.loads(done.stdout.splitlines()[-1])
    return code, err


def test_link_to_dev_zero_is_refused_as_moltis_toml_and_as_a_bundle(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    site.toml.unlink()
    site.toml.symlink_to("/dev/zero")
    code, err = _in_child(tmp_path, "migrate")
    assert code != 0 and f"{site.toml}: refusing to read: it is a character device" in err, err
    bundle = tmp_path / "zero.bundle"
    bundle.symlink_to("/dev/zero")
    code, err = _in_child(tmp_path, "verify-bundle", str(bundle))
    assert code != 0 and f"{bundle}: refusing to read: it is a character device" in err, err
