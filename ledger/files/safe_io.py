"""Safe file writes for the file stores (moltis.toml, provider_keys.json) and exports.

* `locked(path)`: a cross-process lock (flock on `<name>.lock` next to the file, removed
  again after the write), first tried without waiting so an async caller can move the
  wait to a worker thread;
* `replace_file(path, data)`: temp file in the same directory (0600 whatever the umask),
  fsync, rename over the target, fsync the directory — a reader sees the old file or
  the new one, never half of one, and an acknowledged write survives a crash;
* `os_error(...)`: OSError translated into the library's errors, naming the file;
* `config_format(path)` and `parse_document(data, where, fmt)`: the one reader of the
  three formats Moltis loads (`moltis.toml`, `moltis.yaml`/`.yml`, `moltis.json`).
  YAML is read with ruamel.yaml (safe loader, YAML 1.2 like Moltis's serde_yaml);
  the file store also writes it with ruamel's round-trip mode, which keeps comments.
* `check_directory(dir)`: refuse to write into a directory someone else could plant a
  file or a link in (owned by another user, or world-writable without the sticky bit);
* `create_private(path)`: a new file, 0600 from the first byte, never through a link
  (O_CREAT|O_EXCL|O_NOFOLLOW), in a checked directory;
* `overwrite_private(path, data, what)`: a small file (mirror slot, head mark)
  overwritten in place, only a regular file: a FIFO or a device there is refused,
  never waited on or written to;
* `write_private(path, data)`: `replace_file` for files this library produces
  (exports, bundles, mirrors): a link planted at the target is replaced, never
  followed; both refuse a FIFO or device at the target (`refuse_special`).

Every file the library writes goes through these, so none is created through a
symbolic link or readable by others, whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ledger._log import get_logger
from ledger.errors import ParseError, ReadOnlyError, StoreBusyError, StoreError, UnsafePathError
from ledger.files.dirs import ensure_private_dir

__all__ = ["check_directory", "create_private", "locked", "os_error", "overwrite_private",
           "read_file", "read_regular", "read_regular_stat", "refuse_special", "replace_file",
           "write_private"]

_log = get_logger("ledger.files.safe_io")
READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


# moltis.toml is a few KB (the commented template is 57 KB); a config file of many MB is
# a mistake, refused with a clear error instead of being parsed into the ledger.
MAX_FILE_BYTES = 16 << 20


def check_size(path: Path, size: int, limit: int = MAX_FILE_BYTES,
               what: str = "configuration file") -> None:
    """Refuse (ParseError) a file over `limit`, naming the file and `what` it is."""
    if size > limit:
        raise ParseError(f"{path}: {size:,} bytes is too large for a {what} "
                         f"(the limit is {limit:,})")


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a directory"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _not_regular(path: Path, doing: str, mode: int, fix: str) -> UnsafePathError:
    """The one refusal of a FIFO, device, socket or directory where a file should be."""
    return UnsafePathError(f"{path}: refusing to {doing}: it is {_kind(mode)}, not a "
                           f"regular file; {fix}")


def check_regular(path: Path, doing: str) -> None:
    """Refuse (UnsafePathError naming it) anything but a regular file at `path`, links
    followed; nothing there is fine. For files another library opens by name (SQLite's
    database, -wal and -shm): a FIFO there blocks its first read for ever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise os_error(path, err, doing) from err
    if not stat.S_ISREG(mode):
        raise _not_regular(path, doing, mode, "put the file itself there")


def read_regular(path: Path, limit: int = MAX_FILE_BYTES, *,
                 what: str = "configuration file") -> bytes:
    """`read_regular_stat` without the status."""
    return read_regular_stat(path, limit, what=what)[0]


def read_regular_stat(path: Path, limit: int = MAX_FILE_BYTES, *,
                      what: str = "configuration file") -> tuple[bytes, os.stat_result]:
    """The bytes and the status (of the descriptor read) of the regular file at `path`
    (links followed), at most `limit`; the refusal of a larger one names `what` the
    file is (a configuration file unless the caller says otherwise).

    Opened without waiting (O_NONBLOCK: a FIFO in the file's place does not block the
    open), then judged by the open descriptor, not by a `stat` of the name that could be
    swapped in between: anything but a regular file (a FIFO blocks a read for ever, a
    device such as /dev/zero has size 0 and never ends) is refused with UnsafePathError
    naming what it is. At most limit + 1 bytes are read, so a file that grows past the
    limit while it is read is refused too. OSError (FileNotFoundError included) is left
    to the caller, which knows what a missing file means for it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, "read", st.st_mode, "put the file itself there")
        check_size(path, st.st_size, limit, what)
        os.set_blocking(fd, True)  # a regular file: no effect on reads, kept plain
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    check_size(path, len(data), limit, what)
    return data, st


def read_file(path: Path, what: str = "configuration file") -> bytes | None:
    """A file's bytes (None when it does not exist), size-checked; only a regular file
    is read (`read_regular`). `what` names it in a refusal."""
    try:
        return read_regular(path, what=what)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise os_error(path, err, "read") from err


def os_error(path: Path, err: OSError, doing: str) -> StoreError:
    if err.errno in READ_ONLY_ERRNOS:
        return ReadOnlyError(f"{path}: cannot {doing}: {err.strerror} (the file or its "
                             "directory is not writable); the file is unchanged")
    if err.errno in FULL_ERRNOS:
        return StoreError(f"{path}: cannot {doing}: the disk is full ({err.strerror}); "
                          "the file is unchanged")
    return StoreError(f"{path}: cannot {doing}: {err.strerror}; the file is unchanged")


def check_directory(directory: Path) -> None:
    """Refuse a directory that someone else could plant a file or a link in: one owned
    by another user (root's are trusted), or world-writable without the sticky bit.
    UnsafePathError names the directory and the reason."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return  # about to be created by ensure_private_dir, 0700
    except OSError as err:
        raise os_error(directory, err, "use the directory") from err
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{directory}: refusing to write here: not a directory")
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise UnsafePathError(
            f"{directory}: refusing to write here: the directory belongs to uid "
            f"{st.st_uid}, not to you (uid {me}), so its owner could swap the files for "
            "links; use a directory of your own")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise UnsafePathError(
            f"{directory}: refusing to write here: the directory is world-writable "
            f"(mode {stat.S_IMODE(st.st_mode):04o}) without the sticky bit, so anyone could "
            "plant a link in it; use a private directory (or chmod o-w it)")


def _refusal(path: Path, err: OSError) -> StoreError:
    if err.errno == errno.ELOOP or path.is_symlink():
        return UnsafePathError(f"{path}: refusing to write: it is a symbolic link "
                               f"(to {os.readlink(path)!r}); remove it or choose another name")
    if err.errno == errno.EEXIST:
        return UnsafePathError(f"{path}: refusing to write: it already exists")
    return os_error(path, err, "create")


def create_private(path: Path) -> int:
    """A new file at `path`, mode 0600 from the first byte, opened for writing; never
    through a symbolic link and never an existing file (UnsafePathError says which).
    Its directory is created 0700 if missing, else checked (`check_directory`)."""
    check_directory(path.parent)
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError as err:
        raise _refusal(path, err) from err
    os.fchmod(fd, 0o600)  # whatever the umask
    return fd


def overwrite_private(path: Path, data: bytes, what: str) -> None:
    """Overwrite a small file this library keeps (a mirror slot, the head mark) in
    place: created 0600 if missing, never through a symbolic link, and only a regular
    file (UnsafePathError naming `what` and what is there instead), no rename and no
    fsync: its readers check a MAC, so a torn write is never served.

    Opened without waiting (O_NONBLOCK: opening a FIFO for writing otherwise blocks
    until a reader comes, which would hang the gateway's start or a CLI write after
    its commit) and without taking a terminal (O_NOCTTY), then judged by the open
    descriptor, not by a `stat` of the name that could be swapped in between; a
    device node is refused before it is opened when the name already shows it. Only in
    a directory nobody else can plant files in (`check_directory`), and only a file of
    our own (review r15: another user's planted mirror file, 0644, got the config and
    the sealed values)."""
    check_directory(path.parent)
    _refuse_non_regular(path, what, _lstat(path))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_NOCTTY | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP or path.is_symlink():
            raise UnsafePathError(f"{path}: refusing to write {what}: it is a symbolic link; "
                                  "remove it") from None
        if err.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO nobody reads, a directory
            _refuse_non_regular(path, what, _lstat(path))
        raise
    try:
        st = os.fstat(fd)
        _refuse_non_regular(path, what, st)
        if st.st_uid != os.geteuid():
            raise UnsafePathError(f"{path}: refusing to write {what}: the file belongs to uid "
                                  f"{st.st_uid}, not to you (uid {os.geteuid()}); remove it")
        if st.st_nlink != 1:  # a hard link planted at the name: another file of ours
            raise UnsafePathError(f"{path}: refusing to write {what}: the file has "
                                  f"{st.st_nlink} names (a hard link to another file); "
                                  "remove it")
        os.set_blocking(fd, True)  # a regular file: writes never wait; kept plain
        os.fchmod(fd, 0o600)
        view, offset = memoryview(data), 0
        while offset < len(data):
            offset += os.pwrite(fd, view[offset:], offset)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _refuse_non_regular(path: Path, what: str, st: os.stat_result | None) -> None:
    """UnsafePathError when `st` (None: nothing yet) is not a regular file or a link."""
    if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        raise _not_regular(path, f"write {what}", st.st_mode,
                           "remove it (the next write creates the file)")


def refuse_special(path: Path, what: str) -> None:
    """Refuse by name a FIFO, device, socket or directory a rename would replace."""
    _refuse_non_regular(path, what, _lstat(path))


def write_private(path: Path, data: bytes) -> os.stat_result:
    """Atomically make `path` hold `data` (0600), for files this library produces
    (exports, bundles, mirrors): a symbolic link at `path` is replaced by the file,
    never followed, so a planted `moltis.toml -> victim` cannot redirect the write."""
    return replace_file(path, data, follow_symlinks=False)


@contextlib.contextmanager
def locked(path: Path, *, wait: bool, timeout: float = 30.0) -> Iterator[None]:
    """Hold the write lock of `path`. StoreBusyError at once when `wait` is False, or
    after `timeout` seconds (a writer stopped while holding it must not block forever).

    The lock file is removed when the write is done, so an operator's config dir holds
    only their files. Removing a lock file is only safe done this way: the holder
    unlinks it while still holding it, and every locker, once its flock is granted,
    checks that the file it locked is still the one at the path; if not (the holder
    before it removed it), it locks the file now there, or creates one. Without that
    check, a waiter granted the lock on the unlinked file and a newcomer locking a new
    file at the same name would both write. A writer killed while holding the lock
    leaves the file behind (the kernel drops the flock); the next writer uses it and
    removes it.

    The lock is the file's that writes replace (`_written_file`): two symlinks to one
    moltis.toml (two config dirs sharing it) take one lock (review r17: each took its
    own and lost the other's writes)."""
    target = _written_file(path)
    lock = target.with_name(target.name + ".lock")
    check_directory(target.parent)
    deadline = time.monotonic() + (timeout if wait else 0.0)
    pause = 0.001
    while True:
        fd = _open_lock(path, lock)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreBusyError(f"{path}: another writer holds {lock}") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
            if _is_linked_at(fd, lock):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the file we locked was removed by the holder before us: again
    try:
        _remove_stale_temps(target)
        yield
    finally:
        with contextlib.suppress(OSError):  # a read-only directory: the file stays
            os.unlink(lock)  # while still holding it (see above)
        os.close(fd)  # releases the lock


def _open_lock(path: Path, lock: Path) -> int:
    # never through a link: a planted `moltis.toml.lock -> victim` must not be opened
    # O_NONBLOCK|O_NOCTTY: a FIFO or a terminal planted there is refused, not waited on
    nofollow = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        ensure_private_dir(lock.parent)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | nofollow, 0o600)
            os.fchmod(fd, 0o600)
            return fd
        except FileExistsError:
            try:
                fd = os.open(lock, os.O_RDWR | nofollow)
            except PermissionError:
                fd = os.open(lock, os.O_RDONLY | nofollow)
            except FileNotFoundError:  # removed in between by its holder: create it
                return _open_lock(path, lock)
            try:  # never written, but a FIFO or a device is no lock file of ours
                _refuse_non_regular(lock, "the lock file", os.fstat(fd))
            except BaseException:
                os.close(fd)
                raise
            return fd
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePathError(f"{lock}: refusing to use the lock file: it is a symbolic "
                                  "link; remove it") from err
        raise os_error(path, err, f"create the lock file {lock.name}") from err


def _is_linked_at(fd: int, lock: Path) -> bool:
    """Whether the open file `fd` is the one at `lock` now (not removed or replaced)."""
    try:
        at_path = os.lstat(lock)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)


def _remove_stale_temps(path: Path) -> None:
    """Remove the temp files of `path` that a writer killed between writing one and
    renaming it left behind. Only the holder of the lock writes them, so while we hold
    it, any that exists is stale."""
    target = _written_file(path)
    prefix = f".{target.name}."
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        token = name[len(prefix):-len(".tmp")]
        if (name.startswith(prefix) and name.endswith(".tmp") and len(token) == 12
                and all(c in "0123456789abcdef" for c in token)):
            with contextlib.suppress(OSError):
                os.unlink(target.parent / name)
                _log.warning("removed a temp file left by a writer that died",
                             path=str(target.parent / name))


def _written_file(path: Path) -> Path:
    """The file a write of `path` replaces: a symlinked file's target (it stays a
    symlink), but only through a link of the operator's own (UnsafePathError otherwise:
    checked before `locked` creates a lock file or removes temp files beside the
    target), else `path` in its directory's real location."""
    if path.is_symlink():
        owner = os.lstat(path).st_uid
        if owner not in (os.geteuid(), 0):
            raise UnsafePathError(f"{path}: refusing to write through a symbolic link owned "
                                  f"by uid {owner}")
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def replace_file(path: Path, data: bytes, *, follow_symlinks: bool = True,
                 mode: int = 0o600) -> os.stat_result:
    """Atomically and durably make `path` hold `data` (`mode`: 0600 unless a file is put
    back as it was); returns its stat.

    With `follow_symlinks` (Moltis's own moltis.toml / provider_keys.json), a file the
    operator symlinked stays a symlink and its target is replaced, but only a link of
    their own; otherwise a link at `path` is replaced by the file. Either way the
    directory written into is checked (`check_directory`)."""
    target = _written_file(path) if follow_symlinks else path
    check_directory(target.parent)
    refuse_special(target, target.name)  # never rename over a FIFO or device
    ensure_private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
    fd: int | None = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, mode)  # whatever the umask, on the file written, never by name
        _write_all(fd, data)
        os.fsync(fd)
        st = os.fstat(fd)
        os.close(fd)
        fd = None
        os.replace(tmp, target)
    except OSError as err:
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(path, err, "write") from err
    try:
        dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as err:  # the file is written; only the rename's durability is unsure
        _log.warning("cannot fsync the directory", path=str(target.parent),
                     error=err.strerror)
    return st
