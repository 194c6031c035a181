"""Ledger backups under a rotated key: `key rotate` re-seals the ledger backups in the
data dir (`<data dir>/backups/ledger-*.db`, `replaced-*.db`), and `restore` refuses a
backup whose secrets the key at hand cannot open.

A ledger backup holds what a ledger's key protects: the sealed secret values, the
sealed fingerprint key, the key check, the head MAC and signature and the snapshots'
MACs. Re-sealing one does what the rotation did to the live ledger, in one SQLite
transaction of the backup file (all or nothing), without appending anything to its
history: a restore of it is still the history it was. Its head is vouched for under
the new key only when the old key vouched for it. The step is idempotent (a backup
whose key check is already the new key's counts as done), so a rotation stopped
part-way is finished by `key rotate --resume`, which runs it again. A backup sealed
with neither key (another installation's, or damaged) is left untouched and counted.

A backup with no `key_check` row is not taken for one that never held a secret on
that row's absence alone (anyone who can write the file can delete it): its rows are
asked as the open asks them (ledger.engine.key_proof). One they prove was keyed had
the row deleted; one with sealed secrets that no key at hand opens is another key's.
Both are left as they are and refused (by `restore`) or counted (by a rotation).
"""

from __future__ import annotations

from pathlib import Path

import apsw

from ledger._log import get_logger
from ledger.backends.base import CREATED_FORMAT, HEAD_MAC, HEAD_SIGNATURE, Backend, raise_format
from ledger.backends.sqlite import SqliteBackend
from ledger.engine.format_check import log_format
from ledger.engine.head_vouch import unvouched
from ledger.engine.integrity_keys import IntegrityKeys, history_of
from ledger.engine.key_proof import key_proof
from ledger.engine.vault import ENV_KEY, KeySource, Vault
from ledger.errors import InputError, LedgerError, SecretKeyError, VerificationError
from projections.snapshots import open_snapshot, seal_snapshot

__all__ = ["check_backup_key", "ledger_backups", "reseal_ledger_backups", "self_contained"]

_log = get_logger("ledger.ops.backup_reseal")


def ledger_backups(data_dir: Path) -> list[Path]:
    """The ledger backups `backup` and `restore` write into the data dir."""
    root = data_dir / "backups"
    if not root.is_dir():
        return []
    found = [*root.glob("ledger-*.db"), *root.glob("replaced-*.db")]
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


def reseal_ledger_backups(data_dir: Path, old_key: bytes, new_key: bytes) -> tuple[int, int]:
    """Re-seal every ledger backup in the data dir under `new_key`: (re-sealed, failed).
    Backups that hold no sealed secret are not counted."""
    done = failed = 0
    for path in ledger_backups(data_dir):
        try:
            if _reseal(path, old_key, new_key):
                done += 1
        except (LedgerError, apsw.Error) as err:
            failed += 1
            _log.warning("a ledger backup could not be re-sealed", path=str(path),
                         error=str(err))
    return done, failed


def _reseal(path: Path, old_key: bytes, new_key: bytes) -> bool:
    # decided on a read-only open: a backup that is not re-sealed is left byte for byte
    probe = SqliteBackend(path, read_only=True)
    try:
        if probe.get_meta("key_check") is None:
            # never held a secret, unless its rows say otherwise (raises)
            _check_unkeyed(probe, path, {"the old ledger key": old_key,
                                         "the new ledger key": new_key},
                           "left as it is: re-sealing it would write a key check over that")
            return False
        checker = Vault(probe, KeySource(key=old_key, env={}))
        if checker.sealed_with(new_key):
            return True  # re-sealed by a rotation that was stopped later
        if not checker.sealed_with(old_key):
            raise SecretKeyError(f"{path}: sealed with a key that is neither the old nor the "
                                 "new ledger key; left as it is")
    finally:
        probe.close()
    backend = SqliteBackend(path, write_queue=False)
    try:
        keys = KeySource(key=old_key, env={})
        keys.accept_weak = True  # a backup sealed with a weak key is moved off it too
        _rotate_backup(backend, Vault(backend, keys), old_key, new_key)
    except BaseException as err:
        backend.close()
        # still one file if it can be, but the re-seal's own error is what is reported:
        # folding the WAL in fails too while another process reads the backup
        try:
            self_contained(path)
        except apsw.Error as tidy:
            err.add_note(f"{path}: left in WAL mode ({tidy})")
        raise
    backend.close()
    self_contained(path)
    return True


def _rotate_backup(backend: Backend, vault: Vault, old_key: bytes, new_key: bytes) -> None:
    history = history_of(backend.get_meta)  # the backup's own
    old, new = IntegrityKeys(old_key, history), IntegrityKeys(new_key, history)
    snapshots = []
    for seq in backend.snapshot_seqs():
        snap = backend.snapshot_at(seq)
        encoded = None if snap is None else open_snapshot(old.snapshot_mac, seq, snap.hash,
                                                          snap.state)
        if snap is not None and encoded is not None:  # an unproven one is dropped
            snapshots.append((seq, snap.hash, seal_snapshot(new.snapshot_mac, seq, snap.hash,
                                                            encoded)))
    needed = log_format(backend)  # a backup copied by an older build may say less
    with backend.write() as txn:
        if needed > CREATED_FORMAT:
            raise_format(txn, needed, backend.location)
        head = txn.head()
        vouched = head.seq > 0 and unvouched(txn.get_meta, old, vault.ledger_id,
                                             (head.seq, head.hash)) is None
        vault.rotate(txn, new_key)
        if vouched:
            txn.set_meta(HEAD_MAC, new.mac_head(vault.ledger_id, head.seq, head.hash).encode())
            txn.set_meta(HEAD_SIGNATURE,
                         new.sign_head(head.seq, head.hash, vault.ledger_id).encode())
        txn.drop_snapshots()
        for seq, hash_, blob in snapshots:
            txn.put_snapshot(seq, hash_, blob)


def self_contained(path: Path) -> None:
    """Fold the WAL in and switch the file to rollback-journal mode: one file, nothing
    beside it (backups are written in WAL mode; `ledger.ops.backup` uses this too)."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        conn.pragma("journal_mode", "delete")
    finally:
        conn.close()


def _check_unkeyed(backup: Backend, path: Path, keys: dict[str, bytes], left: str) -> None:
    """Raise unless a backup with no key check row never held a secret as far as proof
    goes: VerificationError when one of `keys` (named by where it is from) opens a row
    only its holder writes (the row was deleted), SecretKeyError when it holds a sealed
    secret none of them opens (another key's). `left`: what became of the backup."""
    meta = backup.meta_items()
    ledger_id = meta.get("ledger_id", "").encode()
    for where, key in keys.items():
        proof = key_proof(key, ledger_id, backup, meta)
        if proof is not None:
            raise VerificationError(
                f"{path}: the ledger_meta row key_check is missing, yet {proof} opens with "
                f"{where}: the backup was written with that key and the row was deleted "
                f"from it; {left}. Check it with `moltis-ledger --db {path} verify` before "
                "trusting it", None)
    if any(row.sealed is not None for row in backup.secrets()):
        raise SecretKeyError(f"{path}: it holds sealed secrets but no key check row, and "
                             f"none of them opens with {' or '.join(keys)}; {left}")


def check_backup_key(source: Backend, keys: KeySource, source_file: Path) -> None:
    """Refuse (before anything is replaced) a backup whose secrets are sealed with
    another key than the one at hand (InputError: restored, its secrets would open with
    nothing), or whose key check row was deleted (VerificationError: restored, the
    ledger would be keyed with no key check). Without a key at hand, or a backup that
    never held a secret, nothing to check. The message names the key it needs, never a
    value of one."""
    key = keys.load(create=False)  # an unreadable or weak key raises its own clear error
    if key is None:
        return
    if source.get_meta("key_check") is None:
        try:
            _check_unkeyed(source, source_file, {f"the ledger key from {keys.describe()}": key},
                           "nothing was restored")
        except SecretKeyError:
            pass  # another key's secrets: refused below, naming the key it needs
        else:
            return
    elif Vault(source, keys).sealed_with(key):
        return
    raise InputError(
        f"{source_file}: its secrets are sealed with another ledger key than the one from "
        f"{keys.describe()}; nothing was restored. It needs the ledger key that was in force "
        "when it was made (before a later `moltis-ledger key rotate`, or another "
        f"installation's): restore with that key in place, for example ${ENV_KEY}=<that "
        f"key> moltis-ledger restore {source_file}. `key rotate` re-seals only the backups "
        "in <data dir>/backups")
