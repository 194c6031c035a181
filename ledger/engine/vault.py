"""Secrets at rest: sealing values into the secrets table, opening them, fingerprints.

Each value is sealed with AES-256-GCM under a subkey of the ledger key, with the
ledger's id and the secret's reference as associated data (so a sealed value copied to
another row or another ledger does not open). The ledger key never enters the database;
a keyed check value in `ledger_meta` tells a wrong key from a corrupt value.

Fingerprints are keyed blake3 (a different subkey): equal values have equal
fingerprints in one ledger, and nobody without the key can test a guess against one.

Rotation (`rotate`) re-seals every live secret under a new key in the caller's write
transaction and replaces the key check, so the old key opens nothing afterwards. The
fingerprint key is kept across rotations (sealed under the new key in `ledger_meta`),
so history still tells whether a value changed; every other key derived from the
ledger key (sealing, key check, and anything another module derives on use) changes
with the key.

Another process's rotation can commit while this one unlocks: the key check and the
fingerprint key are read in one statement, and the key files read again until they
agree with it (`_unlock`). A key that still does not match is a wrong key, unless the
ledger's own rows prove it (ledger.engine.key_proof: then the key check row was changed).

This module is long because the key source, the unlocked key state
and sealing share one lock and one invariant (what is sealed is sealed under the key
the ledger holds now), which is easier to keep in one module.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import blake3

from ledger._log import get_logger
from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE, Backend, SecretRow, WriteTxn
from ledger.core.canonical import b64_bytes
from ledger.core.events import KIND_SHRED, decode_event
from ledger.core.secret_refs import DESTROYED_REF, SecretRef
from ledger.engine.integrity_keys import IntegrityKeys, history_of
from ledger.engine.key_check import check_key, parse_key
from ledger.engine.lazy_aead import LazyAead
from ledger.engine.sealed_files import (
    backup_manifest_mac,
    file_mac,
    open_body,
    seal_blob,
    seal_body,
)
from ledger.engine.sealed_files import subkey as _subkey
from ledger.errors import (
    LedgerError,
    SecretDestroyedError,
    SecretKeyError,
    UnsafePathError,
    VerificationError,
    WrongKeyError,
)
from ledger.files.dirs import default_key_file, ensure_private_dir
from ledger.files.safe_io import check_directory, read_regular

if TYPE_CHECKING:  # cryptography is imported when a secret is first sealed or opened
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KeySource", "SealedOpener", "Vault", "file_mac", "open_body", "seal_body"]

ENV_KEY: Final = "MOLTIS_LEDGER_KEY"
_SEALED_V1: Final = b"\x01"
# Reads of the key check and the key files while another process's rotation commits
# and moves its key into place: each of its steps is one state, so three reads see it
# settle (or a key that truly does not match)
_UNLOCK_TRIES: Final = 3
_log = get_logger("ledger.engine.vault")
# the way out of a refusal for a deleted key check row (ledger.engine.key_proof)
MISSING_CHECK_FIX: Final = (
    "Check the ledger with `moltis-ledger verify`, then restore the newest backup "
    "(`moltis-ledger restore FILE`); once `verify` passes, `moltis-ledger sign-head "
    "--adopt` vouches for it as it is and writes the row again")


# A key is 64 hex digits or 44 base64 characters and a newline; anything much longer
# is not a key file.
_MAX_KEY_FILE_BYTES = 4096


def _key_text(path: Path) -> str:
    """A key file's text: a regular file only (a FIFO or device in its place is refused,
    not waited on or read for ever), bounded."""
    return read_regular(path, _MAX_KEY_FILE_BYTES, what="ledger key file").decode("ascii")


def _key_check(key: bytes, ledger_id: bytes) -> str:
    """The key check value (`ledger_meta.key_check`) of `key` for a ledger id."""
    return blake3.blake3(ledger_id, key=_subkey(key, "key check")).hexdigest()


def set_by_its_event(backend: Backend, row: SecretRow) -> bool:
    """Whether the event a sealed secret row names (`created_seq`) sets that secret: a
    row that fails this is orphaned (planted, or left by a write that never committed
    its event), which `verify` names."""
    rec = backend.record(row.created_seq)
    return rec is not None and rec.kind != KIND_SHRED and any(
        r.ref == row.ref for c in decode_event(rec).changes for r in c.refs())


class KeySource:
    """Where the ledger key comes from: an explicit key, MOLTIS_LEDGER_KEY, or a key file
    (MOLTIS_LEDGER_KEY_FILE, else <config dir>/ledger.key), created 0600 on first use."""

    def __init__(self, key: bytes | None = None, key_file: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self._key = key
        self._env = os.environ if env is None else env
        self.key_file = Path(key_file) if key_file is not None else default_key_file(env=self._env)
        # `key rotate` only: open what a weak key sealed, so it can be re-sealed
        self.accept_weak = False
        self._staged: bytes | None = None  # an interrupted rotation's new key, in use

    def describe(self) -> str:
        if self._staged is not None:
            return (f"key file {self.staged_file} (a key rotation was interrupted: finish it "
                    "with `moltis-ledger key rotate --resume`)")
        if self._key is not None:
            return "the key passed by the caller"
        if self._env.get(ENV_KEY):
            return f"${ENV_KEY}"
        return f"key file {self.key_file}"

    @property
    def from_file(self) -> bool:
        """True when the key comes from the key file (not the caller or the environment)."""
        return self._key is None and not self._env.get(ENV_KEY)

    @property
    def key_target(self) -> Path:
        """The file the key is in: where a link at `key_file` points (a key kept on a
        secrets mount, linked into the config dir), so that `key rotate` replaces the
        key there and the link stays."""
        if self.key_file.is_symlink():
            return Path(os.path.realpath(self.key_file))
        return self.key_file

    @property
    def staged_file(self) -> Path:
        """Where `key rotate` writes the new key before the ledger switches to it:
        beside the key file itself (the link's target when it is a link)."""
        target = self.key_target
        return target.with_name(target.name + ".new")

    @property
    def rotation_interrupted(self) -> bool:
        """True while the ledger is opened with the staged key of a rotation that
        committed but did not finish (`key rotate --resume` finishes it)."""
        return self._staged is not None

    def use(self, key: bytes) -> None:
        """From now on, this key (after a rotation)."""
        self._key = check_key(key, "the new key")
        self._staged = None

    def reread(self) -> None:
        """Forget an interrupted rotation's staged key in use: the next load decides
        again from the files (the rotation may have finished since)."""
        self._staged = None

    def use_staged(self, key: bytes) -> None:
        """From now on, the staged key of an interrupted rotation (left on disk where it
        is: the old key file is still needed to re-seal backups)."""
        self._staged = check_key(key, str(self.staged_file))

    def read_file_key(self, path: Path | None = None) -> bytes:
        """The key in a key file (the configured one by default), weak or not: the
        rotation reads the old key this way to re-seal under the new one."""
        path = self.key_file if path is None else path
        try:
            return parse_key(_key_text(path), str(path), strict=False)
        except (OSError, UnicodeDecodeError) as err:
            raise SecretKeyError(f"{path}: cannot read the ledger key: {err}") from err

    def key_check_for(self, ledger_id: str) -> str | None:
        """The key check value this key gives for a ledger id (None without a key):
        tells, before importing (and before the target is opened), whether sealed
        secrets would open there."""
        key = self.load(create=False)
        return None if key is None else _key_check(key, ledger_id.encode())

    def load(self, *, create: bool) -> bytes | None:
        strict = not self.accept_weak
        if self._key is not None:
            return check_key(self._key, "the key passed by the caller", strict=strict)
        if self._staged is not None:
            return self._staged
        text = self._env.get(ENV_KEY)
        if text:
            return parse_key(text, f"${ENV_KEY}", strict=strict)
        try:
            return parse_key(_key_text(self.key_file), str(self.key_file),
                             strict=strict)
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as err:
            raise SecretKeyError(f"{self.key_file}: cannot read the ledger key: {err}") from err
        if not create:
            return None
        return self._create_file()

    def _create_file(self) -> bytes:
        key = os.urandom(32)
        check_directory(self.key_file.parent)
        ensure_private_dir(self.key_file.parent)
        try:
            # 0600 from the first byte, never through a (dangling) link planted there
            fd = os.open(self.key_file,
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            os.fchmod(fd, 0o600)
        except FileExistsError:  # another process won the race: use its key
            if self.key_file.is_symlink() and not self.key_file.exists():
                raise UnsafePathError(f"{self.key_file}: refusing to create the ledger key: "
                                      "a dangling symbolic link is in its place") from None
            return parse_key(_key_text(self.key_file), str(self.key_file))
        except OSError as err:
            raise SecretKeyError(f"{self.key_file}: cannot create the ledger key: {err}") from err
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        _log.info("ledger key created", key_file=str(self.key_file))
        return key


def _file_id(path: Path) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime) of the file at `path` (links followed), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Vault:
    """Seals and opens secret values for one ledger. Implements `SecretOpener`."""

    def __init__(self, backend: Backend, keys: KeySource) -> None:
        self._backend = backend
        self.keys = keys
        self._lock = threading.Lock()
        self._aead: LazyAead | None = None
        self._fp_key: bytes | None = None
        self._fp_sealed: str | None = None  # a rotated ledger's fp_key row, opened on use
        self._check: str | None = None
        # the head (seq, hash) at which the key check was last seen to be the held key's
        # (integrity_now): a rotation appends its event in the transaction that changes
        # the key check, so a write based on exactly that head needs no second look
        self._confirmed_at: tuple[int, bytes] | None = None
        self._integrity: IntegrityKeys | None = None
        self._integrity_missing: set[bool] = set()  # {writing?} asked and found no key
        # the key files as they were when no key (or a wrong one) was found: a key put
        # in place since (or a rotation's move) is asked for again (`_key_files`)
        self._missing_files: object = None
        self._ledger_id = (backend.get_meta("ledger_id") or "").encode()
        self._history: bytes | None = None  # read when keys are first derived (`history`)

    def reload(self) -> None:
        """Forget what was read from the database (after an import or a restore replaced
        it: the ledger id, and so the key check, may have changed)."""
        with self._lock:
            self._aead = None
            self._fp_key = None
            self._check = None
            self._confirmed_at = None
            self._integrity = None
            self._integrity_missing.clear()
            self._missing_files = None
            self._ledger_id = (self._backend.get_meta("ledger_id") or "").encode()
            self._history = None

    @property
    def ledger_id(self) -> bytes:  # what sealed values and the head MAC are bound to
        return self._ledger_id

    @property
    def history(self) -> bytes:
        """What snapshot and head MAC keys are derived with too (HISTORY_ID): read on
        first use, so a read without the key (`get`'s start) does not ask for it."""
        if self._history is None:
            self._history = history_of(self._backend.get_meta)
        return self._history

    # -- key handling ----------------------------------------------------------------

    def _unlock(self, txn: WriteTxn | None = None, *, adopt: bool = False) -> None:
        if self._aead is not None:
            return
        with self._lock:
            if self._aead is not None:
                return
            for attempt in range(_UNLOCK_TRIES):
                # the key check and the fingerprint key of one commit (a rotation writes
                # both): read apart, another process's rotation could fall between them
                rows = self._key_rows(txn)
                stored = rows.get("key_check")
                # A staged key adopted earlier may be stale (that rotation finished, or
                # another followed): decide again from the files
                self.keys.reread()
                # A new key may only be created for a ledger that has never held a secret.
                key = self.keys.load(create=txn is not None and stored is None)
                if key is None:
                    raise SecretKeyError(
                        f"no ledger key: set ${ENV_KEY} or provide {self.keys.key_file} "
                        "(secrets cannot be read or written without it; other config still "
                        "can)")
                check = self._check_of(key)
                if stored is not None and stored != check:
                    key = self._interrupted_rotation_key(stored) or key
                    check = self._check_of(key)
                if stored is None or stored == check:
                    break
                # Another process's rotation may have moved on between the rows and the
                # key files (committed, or moved its key into place): read both again
                if attempt + 1 < _UNLOCK_TRIES:
                    continue
                self._refuse(key, rows, txn)
            assert key is not None  # the loop ends with a matching key, or raised
            if stored is None and txn is not None:
                if not adopt:
                    self._refuse_missing_check(key, rows, txn)
                txn.set_meta("key_check", check)
            self._integrity = IntegrityKeys(key, self.history)
            self._adopt(key, check, rows.get("fp_key"))

    def _key_rows(self, txn: WriteTxn | None) -> Mapping[str, str]:
        if txn is not None:  # one transaction: consistent already
            return {name: value for name in ("key_check", "fp_key")
                    if (value := txn.get_meta(name)) is not None}
        return self._backend.meta_items()  # one statement: one commit's rows

    def _refuse(self, key: bytes, rows: Mapping[str, str], txn: WriteTxn | None) -> NoReturn:
        """A key that does not match the key check: a wrong key, unless the ledger's
        own rows prove it is this ledger's (ledger.engine.key_proof)."""
        from ledger.engine.key_proof import key_mismatch  # only for a mismatch: not on get

        if txn is not None:  # the rows key_proof also asks, from this transaction
            rows = {**rows, **{name: value for name in (HEAD_MAC, HEAD_SIGNATURE)
                               if (value := txn.get_meta(name)) is not None}}
        raise key_mismatch(self._backend, self.keys.describe(), key, self._ledger_id, rows)

    def _refuse_missing_check(self, key: bytes, rows: Mapping[str, str],
                              txn: WriteTxn) -> None:
        """Before a write gives a ledger with no key check row one for this key: refuse
        if the ledger's own rows prove it was written with this key (the row was
        deleted; ledger.engine.key_proof): writing it again would re-key over the
        tampering. A ledger never keyed (nothing opens with the key) gets its row. An
        operator's `sign-head --adopt` writes it back (`restore_check`)."""
        from ledger.engine.key_proof import key_check_missing  # only when the row is missing

        rows = {**rows, **{name: value for name in (HEAD_MAC, HEAD_SIGNATURE)
                           if (value := txn.get_meta(name)) is not None}}
        problem = key_check_missing(self._backend, self.keys.describe(), key,
                                    self._ledger_id, rows)
        if problem is not None:
            raise VerificationError(
                f"{self._backend.location}: {problem}. Nothing was written: that would "
                f"re-key the ledger over it. {MISSING_CHECK_FIX}", None)

    def missing_check_problem(self, ledger_id: bytes | None = None) -> str | None:
        """On a ledger with no key check row (read just now): why the key held proves
        the ledger was written with it after all (the row was deleted), or None (no key
        held, or nothing opens with it: a ledger never keyed). For a keyed open of a
        ledger with events and no head MAC row (Ledger.mac_verdict). `ledger_id`: what
        the rows are bound to, when not the ledger_id row (which a forger can change)."""
        try:
            key = self.keys.load(create=False)
        except SecretKeyError:
            return None  # an unreadable key is no key: what unlocking says too
        if key is None:
            return None
        from ledger.engine.key_proof import key_check_missing  # only with a key to prove

        return key_check_missing(self._backend, self.keys.describe(), key,
                                 ledger_id or self._ledger_id, self._backend.meta_items())

    def restore_check(self, txn: WriteTxn) -> None:
        """Write the key check row of the key unlocked now if the ledger has none: the
        operator vouches for the ledger (`sign-head --adopt`, after `verify`)."""
        try:
            self._unlock(txn, adopt=True)  # writes the row when it unlocks here
        except SecretKeyError:
            return  # no key (or another one): nothing to vouch with, as sign_head finds
        if self._check is not None and txn.get_meta("key_check") is None:
            txn.set_meta("key_check", self._check)

    def holds(self, key_check: str | None) -> bool:
        """Whether `key_check` (a key check row read just now) is that of the key this
        vault unlocked: False after another process's rotation committed (or when
        nothing is unlocked)."""
        return self._check is not None and key_check == self._check

    def _check_of(self, key: bytes) -> str:
        return _key_check(key, self._ledger_id)

    def _adopt(self, key: bytes, check: str, sealed_fp_key: str | None) -> None:
        aead = LazyAead(_subkey(key, "secret sealing"))
        # a rotated key's fingerprint key is sealed: opened on first use (AES-GCM, so
        # cryptography), not on unlock, which every keyed read does for the head MAC
        self._fp_sealed = sealed_fp_key or None
        self._fp_key = None if self._fp_sealed else _subkey(key, "fingerprint")
        self._check = check
        self._aead = aead

    def _fingerprint_key(self) -> bytes:
        assert self._aead is not None
        if self._fp_key is not None:
            return self._fp_key
        from cryptography.exceptions import InvalidTag  # a rotated key's fp key

        try:
            data = b64_bytes(self._fp_sealed or "", "the ledger's sealed fingerprint key (fp_key)")
        except ValueError as err:
            raise SecretKeyError(f"{err}: the ledger's metadata was changed") from None
        try:
            self._fp_key = self._aead.decrypt(data[:12], data[12:], self._aad("fingerprint key"))
        except InvalidTag:
            raise SecretKeyError("the ledger's fingerprint key does not open with the "
                                 f"key from {self.keys.describe()}") from None
        return self._fp_key

    def _interrupted_rotation_key(self, stored: str) -> bytes | None:
        """A rotation that committed but was stopped before it finished (re-sealing the
        migration backups, then moving the new key over the old) left the new key beside
        the old one: use it, and leave both files where they are, since backups not yet
        re-sealed still need the old key. `key rotate --resume` finishes the rotation."""
        staged = self.keys.staged_file
        if not self.keys.from_file or not staged.is_file():
            return None
        try:
            key = parse_key(_key_text(staged), str(staged))
        except (OSError, UnicodeDecodeError, LedgerError):
            return None
        if self._check_of(key) != stored:
            return None
        self.keys.use_staged(key)
        _log.warning("a key rotation was interrupted; the ledger opens with the new key in "
                     f"{staged}, and the old key in {self.keys.key_file} is kept until "
                     "`moltis-ledger key rotate --resume` finishes it", key_file=str(staged))
        return key

    def sealed_with(self, key: bytes) -> bool:
        """Whether the ledger's secrets are sealed with `key` now (read from the store,
        not from what this process unlocked): tells a committed rotation from one that
        was stopped before its commit."""
        return self._backend.get_meta("key_check") == self._check_of(key)

    # -- rotation (inside a write transaction) ---------------------------------------

    def _unlock_current(self, txn: WriteTxn) -> None:
        """`_unlock`, checked against the key the ledger holds now: another process
        may have rotated the key since this one unlocked. Sealing under the old key
        would make the value unreadable once the old key is gone, so the key is read
        again (the key file, or a rotation's staged key); a key that does not match
        is refused."""
        self._unlock(txn)
        stored = txn.get_meta("key_check")
        if stored is not None and stored != self._check:
            self.forget_key()
            self._unlock(txn)

    def rotate(self, txn: WriteTxn, new_key: bytes) -> int:
        """Re-seal every live secret under `new_key` and make it the ledger's key (in
        `txn`: all or nothing). Shredded secrets stay shredded. Returns the count. The
        caller makes the new key available (key file, environment) after the commit."""
        self._unlock_current(txn)
        new_key = check_key(new_key, "the new key")
        assert self._aead is not None
        fp_key = self._fingerprint_key()
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        new_aead = AESGCM(_subkey(new_key, "secret sealing"))
        count = 0
        for row in self._backend.secrets():
            if row.sealed is None:
                continue
            try:
                plain = self._open_row(SecretRef(ref=row.ref, fp="?"), bytes(row.sealed))
            except SecretKeyError:
                if set_by_its_event(self._backend, row):
                    raise  # a secret of this ledger that no longer opens: nothing rotated
                # a row no event sets (planted: no trigger guards the table; `verify`
                # names it) holds no secret of this ledger and must not hold the
                # rotation away from a leaked key: left as it is (review r8, finding 3)
                _log.warning("key rotation: a secret row that no event sets and that does "
                             "not open with the ledger key is left as it is; `verify` "
                             "names it", location=self._backend.location, ref=row.ref[:8])
                continue
            nonce = os.urandom(12)
            sealed = _SEALED_V1 + nonce + new_aead.encrypt(nonce, plain, self._aad(row.ref))
            if not txn.reseal_secret(row.ref, sealed):
                raise SecretKeyError(f"secret {row.ref}: could not be re-sealed; nothing changed")
            count += 1
        nonce = os.urandom(12)
        fp_sealed = nonce + new_aead.encrypt(nonce, fp_key, self._aad("fingerprint key"))
        txn.set_meta("fp_key", base64.b64encode(fp_sealed).decode())
        txn.set_meta("key_check", self._check_of(new_key))
        return count

    def forget_key(self) -> None:
        """Drop the unlocked key (after a rotation commits, or fails, or another
        process rotated it)."""
        with self._lock:
            self._aead = None
            self._fp_key = None
            self._check = None
            self._confirmed_at = None
            self._integrity = None
            self.keys.reread()

    def key_check_for(self, ledger_id: str) -> str | None:
        """`KeySource.key_check_for` with this vault's key source."""
        return self.keys.key_check_for(ledger_id)

    def integrity(self, txn: WriteTxn | None = None) -> IntegrityKeys | None:
        """The snapshot MAC and head signing keys, or None without the ledger key (then
        snapshots are not trusted, and appends are not signed). Same rule as for
        secrets: a key is created only for a ledger that has never had one."""
        writing = txn is not None
        if self._aead is not None and self._integrity is not None:
            return self._integrity  # derived from the key unlocked now (a new key re-derives)
        files = self._key_files()
        if writing in self._integrity_missing:
            if files == self._missing_files:
                return None
            self._integrity_missing.clear()  # a key file was put in place or replaced
        try:
            self._unlock(txn)
        except SecretKeyError as err:
            # asked once per state of the key files, not per read
            self._integrity_missing.add(writing)
            self._missing_files = files
            if isinstance(err, WrongKeyError):
                # a key is held, and nothing of this ledger opens with it: read as without
                # a key (other config stays readable), but never silently, since the head
                # MAC check is what that drops (key_proof: a forger cannot cause this)
                _log.warning(f"{err}: reading without it (the head MAC is not checked, "
                             "snapshots are not trusted, appends are not vouched for)",
                             location=self._backend.location)
            else:
                _log.info("no ledger key: snapshots are not trusted, appends are not signed",
                          location=self._backend.location)
        return self._integrity

    def _key_files(self) -> object:
        """What tells that a key may have appeared since none (or a wrong one) was
        found: the identity of the key file and of a rotation's staged key (two stats,
        only while no key is held). A key from the caller or the environment cannot
        change in this process (None)."""
        if not self.keys.from_file:
            return None
        return (_file_id(self.keys.key_file), _file_id(self.keys.staged_file))

    def confirm(self, head: tuple[int, bytes], key_check: str | None) -> bool:
        """`key_check`, read outside a write transaction in the same read as a head MAC
        for `head` (seq, hash) that checks with the held key: if it is the held key's,
        a write based on exactly `head` skips the key check read (`integrity_now`; a
        rotation moves the head in the transaction that changes the key check). False,
        and nothing remembered, otherwise."""
        if not self.holds(key_check):
            return False
        self._confirmed_at = head
        return True

    def integrity_now(self, txn: WriteTxn, base: tuple[int, bytes] | None = None,
                      new_head: tuple[int, bytes] | None = None) -> IntegrityKeys | None:
        """`integrity(txn)` under the key the ledger holds in this write transaction:
        another process's rotation may have committed since this one unlocked, and a
        head vouched for under the old key would be left unvouched (one meta read).

        A transaction based on `base`, the head at which the key check was last seen to
        be the held key's, skips the read: a rotation changes the key check in the
        transaction that appends its event, so the head would have moved, and this
        transaction commits only on `base` (PostgreSQL's one-statement optimistic append
        would otherwise become the locked way: three round trips instead of one).
        `new_head` (seq, hash) is where this transaction leaves the head: the key check
        holds there too (a transaction that rolls back leaves a pair no head has)."""
        keys = self.integrity(txn)
        if keys is None:
            return None
        if base is None or base != self._confirmed_at:
            if history_of(txn.get_meta) != self.history:
                # a restore or an import gave the ledger a history of its own, in the
                # transaction that moved the head (Ledger.fork_history)
                self.reload()
                keys = self.integrity(txn)
            elif not self.holds(txn.get_meta("key_check")):
                self.forget_key()
                keys = self.integrity(txn)
        if keys is not None and new_head is not None:
            self._confirmed_at = new_head
        return keys

    def fingerprint(self, plaintext: str, txn: WriteTxn | None = None) -> str:
        self._unlock(txn)
        return blake3.blake3(plaintext.encode("utf-8"),
                             key=self._fingerprint_key()).hexdigest()[:16]

    def _aad(self, ref: str) -> bytes:
        return self._ledger_id + b"\x00" + ref.encode()

    # -- sealing (inside a write transaction) ----------------------------------------

    def seal(self, txn: WriteTxn, plaintext: str, seq: int) -> SecretRef:
        """Store a value in the secrets table; return the reference events will carry."""
        self._unlock_current(txn)
        assert self._aead is not None
        ref = os.urandom(12).hex()  # os.urandom: what `secrets` uses, without its imports
        nonce = os.urandom(12)
        sealed = _SEALED_V1 + nonce + self._aead.encrypt(
            nonce, plaintext.encode("utf-8"), self._aad(ref)
        )
        txn.put_secret(ref, sealed, seq)
        return SecretRef(ref=ref, fp=self.fingerprint(plaintext))

    # -- opening ---------------------------------------------------------------------

    def is_destroyed(self, ref: SecretRef) -> bool:
        """Shredded here, or imported as destroyed from an export."""
        row = self._backend.secret(ref.ref)
        if row is None:
            return ref.ref.startswith(DESTROYED_REF)
        return row.sealed is None

    def open_secret(self, ref: SecretRef) -> str:
        row = self._backend.secret(ref.ref)
        if row is None:
            raise SecretDestroyedError(
                f"secret fp:{ref.fp} has no stored value in this ledger (it came from a "
                "masked export, or its value was destroyed before export); set it again"
            )
        if row.sealed is None:
            raise SecretDestroyedError(
                f"secret fp:{ref.fp} was shredded at seq {row.shredded_seq}; its value is gone"
            )
        self._unlock()
        try:
            return self._open_row(ref, bytes(row.sealed)).decode()
        except SecretKeyError:
            if self._backend.get_meta("key_check") == self._check:
                raise
        self.forget_key()  # another process rotated the key since: read it again
        self._unlock()
        return self._open_row(ref, bytes(row.sealed)).decode()

    def _open_row(self, ref: SecretRef, sealed: bytes) -> bytes:
        assert self._aead is not None
        from cryptography.exceptions import InvalidTag

        if not sealed.startswith(_SEALED_V1) or len(sealed) < 29:
            raise SecretKeyError(f"secret fp:{ref.fp}: the stored value is malformed")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], self._aad(ref.ref))
        except InvalidTag:
            raise SecretKeyError(
                f"secret fp:{ref.fp} does not open with the ledger key from "
                f"{self.keys.describe()} (wrong key, or the value was tampered with)"
            ) from None

    # -- whole files (migration backups) -----------------------------------------------

    def seal_file(self, data: bytes, label: str, txn: WriteTxn | None = None) -> bytes:
        """A file's bytes sealed with the ledger key (a subkey of its own), bound to
        `label` (the file's name). Not bound to this ledger's id, on purpose: a backup
        must open with the key alone, even when the ledger is gone."""
        return seal_blob(self._master(txn), data, label)

    def manifest_mac(self, manifest: Mapping[str, Any]) -> str:
        """`backup_manifest_mac` with the ledger key."""
        return backup_manifest_mac(self._master(None), manifest)

    def master_key(self) -> bytes:
        """The ledger key itself (what the head mark beside it is sealed with)."""
        return self._master(None)

    def _master(self, txn: WriteTxn | None) -> bytes:
        self._unlock(txn)
        key = self.keys.load(create=False)
        if key is None:  # _unlock succeeded, so a key exists
            raise SecretKeyError(f"no ledger key: set ${ENV_KEY} or provide {self.keys.key_file}")
        return key


class SealedOpener:
    """Opens secrets from sealed values kept outside the database (the head mirror),
    with the ledger key: the same sealing as `Vault`, bound to the same ledger id."""

    def __init__(self, keys: KeySource, ledger_id: str, sealed: Mapping[str, bytes]) -> None:
        self._keys, self._ledger_id, self._sealed = keys, ledger_id.encode(), sealed
        self._aead: AESGCM | None = None

    def is_destroyed(self, ref: SecretRef) -> bool:
        return ref.ref not in self._sealed

    def open_secret(self, ref: SecretRef) -> str:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        sealed = self._sealed.get(ref.ref)
        if sealed is None:
            raise SecretDestroyedError(f"secret fp:{ref.fp} has no value in the mirror")
        if self._aead is None:
            key = self._keys.load(create=False)
            if key is None:
                raise SecretKeyError(f"no ledger key: set ${ENV_KEY} or provide "
                                     f"{self._keys.key_file}")
            self._aead = AESGCM(_subkey(key, "secret sealing"))
        if not sealed.startswith(_SEALED_V1) or len(sealed) < 29:
            raise SecretKeyError(f"secret fp:{ref.fp}: the mirrored value is malformed")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:],
                                      self._ledger_id + b"\x00" + ref.ref.encode()).decode()
        except InvalidTag:
            raise SecretKeyError(f"secret fp:{ref.fp} does not open with the ledger key from "
                                 f"{self._keys.describe()}") from None
