"""The ledger key as an operator sees it: where it is, whether its file is private, and
`key rotate`.

Rotation writes the new key beside the old one first (`ledger.key.new`, 0600, never
through a link), then re-seals every live secret and appends the rotation event in
one transaction, then moves the new key over the old file. A stop between the commit
and the move is finished by the next process that opens the ledger (the vault finds
the staged key that matches); a failure before the commit leaves the old key in force
and removes the staged one. When the key comes from $MOLTIS_LEDGER_KEY (or a caller),
the new key is written to a file the operator names, and they install it.

Migration backups (`<data dir>/backups/migrate-*/*.sealed`) and ledger backups
(`<data dir>/backups/ledger-*.db`, `replaced-*.db`: ledger.ops.backup_reseal) are
sealed with the ledger key too: after the commit and before the key file moves, each
is re-sealed under the new key (atomically, a manifest updated), so `restore` and
`migrate --from-backup` keep working. A key file that is a symbolic link is rotated
where it points (the new key is staged and moved there, after checking that
directory); the link stays. If the command is stopped during that step, the backups
not yet re-sealed still need the old key; `key rotate` says how many it re-sealed, and
`key rotate --resume` finishes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

from ledger._log import get_logger
from ledger.core import constant_time
from ledger.engine.ledger import Ledger
from ledger.engine.sealed_files import backup_manifest_mac, open_blob, seal_blob
from ledger.engine.vault import ENV_KEY, KeySource
from ledger.errors import InputError, LedgerError, SecretKeyError
from ledger.files.safe_io import (
    check_directory,
    create_private,
    locked,
    read_file,
    refuse_special,
    write_private,
)
from ledger.ops.backup_reseal import reseal_ledger_backups

__all__ = ["Rotation", "key_file_problem", "key_location", "resume_rotation", "rotate_key"]


_log = get_logger("ledger.ops.keys")


@dataclass(frozen=True)
class Rotation:
    seq: int
    secrets: int  # live secrets re-sealed
    key_location: str  # where the new key is now
    installed: bool  # False: the operator must install it ($MOLTIS_LEDGER_KEY)
    backups: int = 0  # sealed migration backup files re-sealed
    backups_failed: int = 0  # ... that could not be (damaged, another key): logged
    ledger_backups: int = 0  # ledger backups (backups/ledger-*.db, replaced-*.db) re-sealed


def key_location(keys: KeySource) -> str:
    """Where the key that opens the ledger's secrets is, for messages to operators."""
    return keys.describe()


def key_file_problem(keys: KeySource) -> str | None:
    """A warning when the key file can be read by others (wider than 0600), is a link
    owned by someone else, or a rotation was stopped part-way; None when fine or when
    the key is not in a file."""
    if not keys.from_file:
        return None
    if keys.staged_file.exists():
        return _interrupted(keys)
    path = keys.key_file
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return (f"{path}: the ledger key file has mode {mode:04o}; anyone who can read it "
                f"can open every secret: chmod 600 {path}")
    if st.st_uid not in (os.geteuid(), 0):
        return f"{path}: the ledger key file belongs to uid {st.st_uid}, not to you"
    return None


def _write_key(path: Path, key: bytes) -> None:
    fd = create_private(path)
    try:
        os.write(fd, (key.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def reseal_backups(data_dir: Path, old_key: bytes, new_key: bytes) -> tuple[int, int]:
    """Re-seal the sealed files of every migration backup under `new_key`, each file
    and then its manifest replaced atomically. Returns (re-sealed, failed).

    Idempotent, so a rotation stopped part-way is finished by running it again: a file
    that already opens with the new key is counted as done, and the manifest's hashes
    are taken from the files as they are (a stop between a file and its manifest)."""
    done = failed = 0
    root = data_dir / "backups"
    folders = sorted(root.glob("migrate-*")) if root.is_dir() else []
    for folder in folders:
        manifest_path = folder / "manifest.json"
        try:
            manifest = json.loads((read_file(manifest_path) or b"{}").decode("utf-8"))
            entries = manifest.get("files", {})
        except (LedgerError, ValueError, AttributeError):
            continue  # not a migration backup
        # only a manifest one of the keys proves is re-MAC'd: an edited one stays refused
        mac = manifest.get("mac")
        proven = isinstance(mac, str) and any(
            constant_time.equal(mac, backup_manifest_mac(key, manifest))
            for key in (old_key, new_key))
        changed = proven
        for name, entry in entries.items():
            if not isinstance(entry, dict) or not entry.get("sealed"):
                continue
            stored_as = str(entry.get("stored_as", name))
            path = folder / stored_as
            if "/" in stored_as or stored_as.startswith("."):
                continue
            try:
                data = read_file(path)
                if data is None:
                    continue
                if _opens(new_key, data, name, path):
                    resealed = data  # re-sealed by a run that was stopped later
                else:
                    plain = open_blob(old_key, data, name, str(path))
                    resealed = seal_blob(new_key, plain, name)
                    write_private(path, resealed)
            except LedgerError as err:
                failed += 1
                _log.warning("a sealed backup file could not be re-sealed", path=str(path),
                             error=str(err))
                continue
            entry["blake3"] = blake3(resealed).hexdigest()
            changed = True
            done += 1
        if changed:
            if proven:
                manifest["mac"] = backup_manifest_mac(new_key, manifest)
            write_private(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    return done, failed


def _opens(key: bytes, data: bytes, label: str, path: Path) -> bool:
    try:
        open_blob(key, data, label, str(path))
    except SecretKeyError:
        return False
    return True


def _interrupted(keys: KeySource) -> str:
    return (f"a key rotation was interrupted: the ledger's secrets are sealed with the new "
            f"key in {keys.staged_file}, and the old key in {keys.key_file} is kept because "
            "sealed backups may still need it; finish the rotation with "
            "`moltis-ledger key rotate --resume`")


@contextlib.contextmanager
def _one_rotation(ledger: Ledger) -> Iterator[None]:
    """One rotation at a time: two at once would both write `ledger.key.new`, and one
    could move the other's key over the key file while the ledger is sealed with its
    own (every secret lost). The lock (`ledger.key.lock`, removed after) is not
    waited for: a second `key rotate` is refused (StoreBusyError, exit 5). Inside it
    the key is read again from disk, as another rotation may have just finished."""
    with locked(ledger.vault.keys.key_file, wait=False):
        ledger.vault.forget_key()
        yield


def rotate_key(ledger: Ledger, *, new_key_file: Path | None = None, actor: str | None = None,
               reason: str | None = None, source: str = "cli",
               data_dir: Path | None = None) -> Rotation:
    """Re-seal every live secret under a new random key, and the sealed migration
    backups under `data_dir` (see the module docstring for the order and why a stop
    at any point loses nothing)."""
    with _one_rotation(ledger):
        return _rotate(ledger, new_key_file, actor, reason, source, data_dir)


def _rotate(ledger: Ledger, new_key_file: Path | None, actor: str | None, reason: str | None,
            source: str, data_dir: Path | None) -> Rotation:
    keys = ledger.vault.keys
    keys.accept_weak = True  # moving away from a weak key is the fix for one
    ledger.vault.fingerprint("")  # unlock with the current key
    if keys.rotation_interrupted:
        raise InputError(_interrupted(keys))
    old_key = keys.load(create=False)
    new_key = os.urandom(32)
    if new_key_file is None:
        if not keys.from_file:
            raise InputError(f"the ledger key comes from {keys.describe()}, which this command "
                             "cannot change: name a file for the new key with --new-key-file "
                             f"and install it as ${ENV_KEY} afterwards")
        # a linked key is rotated where it is: that directory is checked like the
        # config dir (nobody else may plant a file or a link in it)
        check_directory(keys.key_target.parent)
        target = keys.staged_file
        with contextlib.suppress(FileNotFoundError):
            target.unlink()  # a rotation stopped before its commit: that key never served
    else:
        target = new_key_file
    _write_key(target, new_key)  # durable before the commit that makes it the only key
    _fsync_dir(target.parent)
    try:
        commit, count = ledger.rotate_key(new_key, actor=actor, reason=reason, source=source)
    except BaseException:
        # Only a key that never sealed anything may go: a failure after the commit
        # (signing, snapshots, the mirror) leaves the rotation to `--resume`.
        with contextlib.suppress(Exception):
            if not ledger.vault.sealed_with(new_key):
                target.unlink()
        raise
    backups, failed, ledgers = _finish(keys, old_key, new_key, data_dir,
                                       move=new_key_file is None)
    if new_key_file is None:
        return Rotation(commit.seq, count, _where(keys), True, backups, failed, ledgers)
    return Rotation(commit.seq, count, str(target), False, backups, failed, ledgers)


def _finish(keys: KeySource, old_key: bytes | None, new_key: bytes, data_dir: Path | None,
            *, move: bool) -> tuple[int, int, int]:
    """After the commit: re-seal the backups (migration and ledger backups), then (key
    file) move the new key over the old one, the step that makes the old key
    unrecoverable, so it comes last."""
    backups = failed = ledgers = 0
    if data_dir is not None and old_key is not None:
        backups, failed = reseal_backups(data_dir, old_key, new_key)
        ledgers, failed_ledgers = reseal_ledger_backups(data_dir, old_key, new_key)
        failed += failed_ledgers
    if move:
        # over the key itself, never over a link to it (the link stays the operator's)
        check_directory(keys.key_target.parent)
        refuse_special(keys.key_target, "the key file")
        os.replace(keys.staged_file, keys.key_target)  # the old key is gone from disk
        _fsync_dir(keys.key_target.parent)
        keys.use(new_key)
    return backups, failed, ledgers


def _where(keys: KeySource) -> str:
    if keys.key_target != keys.key_file:
        return f"key file {keys.key_target} (linked from {keys.key_file})"
    return f"key file {keys.key_file}"


def resume_rotation(ledger: Ledger, *, new_key_file: Path | None = None,
                    data_dir: Path | None = None) -> Rotation | None:
    """Finish a rotation that was stopped part-way: the steps after its commit (head
    signature, snapshots, mirror, backups, the key move) run again, each idempotent.
    With the key in a file, the new key is the staged one; with $MOLTIS_LEDGER_KEY
    (still the old key), it is `new_key_file`. When the rotation had not committed,
    its staged key never sealed anything and is removed: returns None (the old key is
    still the ledger's)."""
    with _one_rotation(ledger):
        return _resume(ledger, new_key_file, data_dir)


def _resume(ledger: Ledger, new_key_file: Path | None, data_dir: Path | None
            ) -> Rotation | None:
    keys = ledger.vault.keys
    keys.accept_weak = True
    old_key: bytes | None
    new_key: bytes | None
    if new_key_file is None:
        if not keys.from_file:
            raise InputError(f"the ledger key comes from {keys.describe()}: name the new key "
                             "that the stopped rotation wrote with --new-key-file")
        staged = keys.staged_file
        if not staged.exists():
            raise InputError(f"no key rotation to resume: {staged} does not exist")
        old_key = keys.read_file_key()
        try:
            new_key = keys.read_file_key(staged)
        except SecretKeyError:
            new_key = None  # stopped while the staged key was being written
    else:
        staged = new_key_file
        old_key = keys.load(create=False)
        new_key = keys.read_file_key(new_key_file)
    if new_key is None or not ledger.vault.sealed_with(new_key):
        if old_key is None or not ledger.vault.sealed_with(old_key):
            raise SecretKeyError(
                f"neither the key in {staged} nor the one from {keys.describe()} opens this "
                "ledger's secrets; nothing was changed")
        if new_key_file is None:
            staged.unlink()  # never sealed anything
        _log.warning("the key rotation had not committed; the old key is still in force",
                     staged=str(staged))
        return None
    ledger.vault.forget_key()
    if new_key_file is None:
        keys.use_staged(new_key)
    else:
        keys.use(new_key)
    ledger.finish_key_rotation()
    backups, failed, ledgers = _finish(keys, old_key, new_key, data_dir,
                                       move=new_key_file is None)
    head = ledger.head_state().seq
    _log.info("finished an interrupted key rotation", seq=head, backups=backups)
    if new_key_file is None:
        return Rotation(head, 0, _where(keys), True, backups, failed, ledgers)
    return Rotation(head, 0, str(new_key_file), False, backups, failed, ledgers)
