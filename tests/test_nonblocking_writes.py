"""A FIFO, a device or a directory where the library overwrites one of its own small
files (a head mirror slot, the head mark, a lock file) is refused naming the file and
what it is, never waited on or written to (review round 5, R5: opening a FIFO for
writing blocks until a reader comes, so a FIFO at data/ledger-head.0.json hung the
gateway's start, and one at the head mark hung `sign-head --adopt`).

The primitive's FIFO case runs in this process with a guard: a thread keeps the FIFO's
read end open, so the old code's open returns instead of hanging the suite (and then
fails the assertions). Where nobody reads the FIFO, real processes run with a timeout
that is only a guard: a hang is the failure. A commit whose mirror or mark cannot be
written stays acknowledged and durable (a mark or mirror not written only logs a
warning, as `Ledger._raise_mark` and `attach_mirror` document)."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import UnsafePathError
from ledger.files.safe_io import locked, overwrite_private
from tests.operator import invoke, make_site

ROOT = Path(__file__).parent.parent


@pytest.fixture
def read_end() -> Iterator[list[Path]]:
    """FIFOs added to the list get a reader that opens and drains them, again and
    again, so a writer that opens one does not block the suite."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    made: list[Path] = []

    def drain(path: Path) -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_RDONLY)  # returns once a writer opened it
            except OSError:
                return
            try:
                while os.read(fd, 1 << 16):
                    pass
            finally:
                os.close(fd)

    class Guarded(list[Path]):
        def append(self, path: Path) -> None:
            os.mkfifo(path)
            held = path.with_name(f".{path.name}.guard")  # stays if the code replaces it
            os.link(path, held)
            made.append(held)
            thread = threading.Thread(target=drain, args=(held,), daemon=True)
            thread.start()
            threads.append(thread)
            super().append(path)

    yield Guarded()
    stop.set()
    # a reader waits in its open for a writer: give it one, again until it stopped (not
    # yet in its open, ENXIO: try again, it is about to be)
    for path, thread in zip(made, threads, strict=True):
        while thread.is_alive():
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(0.01)


def test_overwrite_private_refuses_a_fifo_it_would_write_into(tmp_path: Path,
                                                              read_end: list[Path]) -> None:
    fifo = tmp_path / "ledger-head.0.json"
    read_end.append(fifo)
    with pytest.raises(UnsafePathError, match=r"ledger-head\.0\.json: refusing to write the "
                       r"head mirror: it is a FIFO \(named pipe\), not a regular file"):
        overwrite_private(fifo, b"{}", "the head mirror")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left as it is


def test_overwrite_private_refuses_a_fifo_nobody_reads(tmp_path: Path) -> None:
    # without O_NONBLOCK this open blocks for ever; run in a child so a hang fails
    fifo = tmp_path / "ledger-head.hwm"
    os.mkfifo(fifo)
    script = ("import sys; from pathlib import Path\n"
              "from ledger.files.safe_io import overwrite_private\n"
              "try:\n    overwrite_private(Path(sys.argv[1]), b'x', 'the head mark')\n"
              "except Exception as err:\n    print(type(err).__name__, err)\n")
    try:
        done = subprocess.run([sys.executable, "-c", script, str(fifo)], capture_output=True,
                              text=True, timeout=60, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("overwrite_private waited for a reader of the FIFO")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"UnsafePathError {fifo}: refusing to write the head mark: "
                                  "it is a FIFO (named pipe)"), done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_overwrite_private_never_writes_to_a_device_node(tmp_path: Path) -> None:
    node = tmp_path / "ledger-head.1.json"
    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # the null device: harmless
    with pytest.raises(UnsafePathError, match=r"ledger-head\.1\.json: refusing to write the "
                       "head mirror: it is a character device"):
        overwrite_private(node, b"{}", "the head mirror")


def test_overwrite_private_refuses_a_directory_and_still_writes_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "slot"
    folder.mkdir()
    with pytest.raises(UnsafePathError, match="refusing to write the head mirror: it is a "
                       "directory"):
        overwrite_private(folder, b"{}", "the head mirror")
    plain = tmp_path / "plain"
    overwrite_private(plain, b"a longer first body", "the head mirror")
    overwrite_private(plain, b"short", "the head mirror")
    assert plain.read_bytes() == b"short"
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600


def test_a_fifo_as_a_lock_file_is_refused(tmp_path: Path, read_end: list[Path]) -> None:
    target = tmp_path / "moltis.toml"
    read_end.append(tmp_path / "moltis.toml.lock")
    with pytest.raises(UnsafePathError, match=r"moltis\.toml\.lock: refusing to write the "
                       "lock file: it is a FIFO"), locked(target, wait=False):
        pass


GATEWAY_OPEN = """
import asyncio
from ledger.ops.open_store import open_store
async def main():
    store = open_store()
    print((await store.load_raw()).server.port)
asyncio.run(main())
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """A real process (the FIFO has no reader): the timeout is only a guard."""
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60,
                              cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{args[1:]} hung on a FIFO")


def _migrated(tmp_path: Path) -> Path:
    site = make_site(tmp_path)
    assert invoke(["migrate"]).code == 0
    assert invoke(["set", "server.port", "2000"]).code == 0
    return site.data_dir


def test_the_gateways_open_does_not_hang_on_a_fifo_at_a_mirror_slot(tmp_path: Path) -> None:
    data = _migrated(tmp_path)
    for slot in data.glob("ledger-head.*.json"):
        slot.unlink()
    os.mkfifo(data / "ledger-head.0.json")
    opened = _run(sys.executable, "-c", GATEWAY_OPEN)
    assert opened.returncode == 0, opened
    assert opened.stdout.strip() == "2000", opened
    assert stat.S_ISFIFO(os.lstat(data / "ledger-head.0.json").st_mode)


def test_a_keyed_write_is_acknowledged_with_fifos_at_the_mirror_and_the_mark(
        tmp_path: Path) -> None:
    data = _migrated(tmp_path)
    mark = tmp_path / "config" / "ledger-head.hwm"
    for path in [*data.glob("ledger-head.*.json"), mark]:
        path.unlink()
        os.mkfifo(path)
    done = _run(sys.executable, "-m", "ledger", "set", "server.port", "3000")
    assert done.returncode == 0, done
    assert "appended" in done.stdout, done
    # the refusal is logged, naming the file and what it is; the commit stands
    assert f"{mark}: refusing to" in done.stderr and "FIFO" in done.stderr, done.stderr
    assert invoke(["get", "server.port"]).out.strip() == "3000"


def test_sign_head_adopt_does_not_hang_on_a_fifo_at_the_mark(tmp_path: Path) -> None:
    _migrated(tmp_path)
    mark = tmp_path / "config" / "ledger-head.hwm"
    mark.unlink()
    os.mkfifo(mark)
    done = _run(sys.executable, "-m", "ledger", "sign-head", "--adopt")
    assert f"{mark}: refusing to write the head mark: it is a FIFO" in done.stderr, done
    assert "Traceback" not in done.stderr, done.stderr
    assert stat.S_ISFIFO(os.lstat(mark).st_mode)


def test_overwrite_private_refuses_a_hard_link_to_another_file(tmp_path: Path) -> None:
    """The reread: a hard link planted at the mirror's name (in a directory where that
    is possible) would have had another file of ours overwritten with the mirror."""
    precious = tmp_path / "precious.key"
    precious.write_bytes(b"keep me")
    mirror = tmp_path / "ledger-head.0.json"
    os.link(precious, mirror)
    with pytest.raises(UnsafePathError, match="hard link"):
        overwrite_private(mirror, b"{}", "the head mirror")
    assert precious.read_bytes() == b"keep me"
