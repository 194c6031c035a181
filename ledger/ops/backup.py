"""Backup and restore: a verified, self-contained SQLite copy of any ledger, and a
restore that rebuilds the ledger from a backup's rows instead of copying its file.

Backup builds a fresh SQLite file with this project's own schema and copies the rows
into it through the same checks as an import (`copy_ledger`): the same code for a
SQLite, PostgreSQL or in-memory ledger. The file is created 0600 without following
symlinks, in a directory that is checked, and left in rollback-journal mode: one
self-contained file, no -wal or -shm beside it. A ledger that does not verify is still
copied raw (where the backend has a file) as evidence, and the report says it failed.

Restore never copies the backup file's schema objects or meta (a foreign trigger in a
backup could otherwise swallow every later write): it builds a fresh ledger beside the
live one from the backup's rows, checked as an import, then swaps it in atomically,
after keeping the replaced ledger as a backup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from ledger.backends.base import Backend
from ledger.backends.sqlite import SqliteBackend
from ledger.core.chain import VerifyReport, verify_records
from ledger.engine.ledger import Ledger
from ledger.errors import InputError, StoreError, VerificationError
from ledger.files.safe_io import create_private
from ledger.ops.backup_reseal import check_backup_key, self_contained
from ledger.ops.migrate import META_SYNC_SEQ
from ledger.ops.stale_stages import remove_files, remove_stale_restore_stages, restore_stage
from ledger.ops.transfer import copy_ledger, finish_copy, stage_copy

__all__ = ["RestoreResult", "backup", "default_backup_path", "restore"]


def default_backup_path(data_dir: Path, what: str = "ledger") -> Path:
    """`<data dir>/backups/<what>-<UTC time>.db`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return data_dir / "backups" / f"{what}-{stamp}.db"


def _new_file(target: Path) -> None:
    if target.exists() and not target.is_symlink():
        raise InputError(f"{target}: already exists; choose a new file for the backup")
    # 0600 from the first byte, never through a link, in a checked directory
    os.close(create_private(target))


def backup(ledger: Ledger, target: Path) -> VerifyReport:
    """A verified copy of the ledger in a new SQLite file (while writers run). A ledger
    whose chain breaks, or whose head the head mark, head MAC or signature does not
    vouch for (a log re-chained without the key: every read refuses it), is copied as
    it is, as evidence, and the report says why it is not good (review r8, finding 2:
    the chain alone was checked, so such a copy was reported good)."""
    if target.exists() or target.is_symlink():
        raise InputError(f"{target}: already exists; choose a new file for the backup")
    source = ledger.backend
    refused = _head_refusal(ledger)
    if refused is None:
        chain = verify_records(source.read())
        if not chain.ok:
            refused = VerificationError(chain.problem or "the chain breaks", chain.first_bad_seq)
    if refused is not None:
        if source.name != "sqlite":
            # no file to copy as it is: the server's own dump is the evidence (r27)
            raise VerificationError(
                f"{source.location}: the ledger does not verify ({refused}); nothing was "
                "written: keep the database as it is (pg_dump) as evidence, and run "
                "`moltis-ledger verify`", refused.seq)
        try:
            source.backup_to(target)  # evidence of what is there; the report says it is bad
        except FileExistsError:
            raise InputError(f"{target}: already exists; choose a new file for the backup"
                             ) from None
    else:
        _new_file(target)
        copy = SqliteBackend(target, write_queue=False)
        try:
            copy_ledger(source, copy)
        except BaseException:
            copy.close()
            remove_files(target)
            raise
        copy.close()
        self_contained(target)
    check = SqliteBackend(target, read_only=True)
    try:
        report = verify_records(check.read())
    finally:
        check.close()
    if refused is not None and report.ok:
        return msgspec.structs.replace(report, ok=False, problem=str(refused),
                                       first_bad_seq=refused.seq or report.head_seq)
    return report


def _keep_file_sync(live: Backend, fresh: Backend) -> None:
    """The live ledger's record of the config and key files as last imported, kept in
    the restored copy (in step at its head): the files are not history, so the
    backup's older record made a hand edit the live ledger had already imported look
    new, and the next read imported it over the restore (review r15)."""
    rows = {key: value for key, value in live.meta_items().items() if key.startswith("import.")}
    if not rows:
        return  # never imported here: the backup's record is the only one
    stale = [key for key in fresh.meta_items() if key.startswith("import.") and key not in rows]
    with fresh.write() as txn:
        for key in stale:  # the backup's record of a file the live ledger no longer has
            txn.delete_meta(key)
        for key, value in rows.items():
            txn.set_meta(key, value)
        txn.set_meta(META_SYNC_SEQ, str(txn.head().seq))


def _head_refusal(ledger: Ledger) -> VerificationError | None:
    """Why every read of `ledger` refuses its head (the read proof: head mark, head MAC
    or signature, the chain from a MAC'd snapshot), or None."""
    try:
        ledger.head_state()
    except VerificationError as err:
        return err
    return None


@dataclass(frozen=True)
class RestoreResult:
    report: VerifyReport
    kept: Path | None  # where the replaced ledger was kept (None if it was empty)


def restore(ledger: Ledger, source_file: Path, *, force: bool = False,
            data_dir: Path | None = None) -> RestoreResult:
    """Replace the ledger with a backup's history. The backup's chain must verify and
    every event pass the import checks; refused (unless `force`) when that would drop
    events the backup does not have. The replaced ledger is kept as a backup in
    `<data_dir>/backups/` (default: `backups/` beside the ledger file)."""
    backend = ledger.backend
    if backend.name != "sqlite":
        raise StoreError(f"restore into a {backend.name} ledger: use import-bundle into "
                         "an empty ledger instead")
    source = SqliteBackend(source_file, read_only=True)
    try:
        report = verify_records(source.read())
        if not report.ok:
            raise VerificationError(f"{source_file}: {report.problem}; nothing was restored",
                                    report.first_bad_seq)
        check_backup_key(source, ledger.vault.keys, source_file)
        current = backend.head()
        if current.seq and not force:
            rec = source.record(current.seq)
            if rec is None or rec.hash != current.hash:
                raise InputError(
                    f"restoring {source_file} (head seq {report.head_seq}) would drop or "
                    f"replace events of this ledger (head seq {current.seq}); pass --force "
                    "to restore anyway")
        live = Path(backend.location)
        fresh_path = restore_stage(live)
        remove_stale_restore_stages(live)
        remove_files(fresh_path)
        _new_file(fresh_path)
        fresh = SqliteBackend(fresh_path, write_queue=False)
        try:
            copy_ledger(source, fresh)  # rows only, checked, all or nothing
            # signed, forked and its snapshots sealed before it goes live: a crash after
            # the swap leaves no copy sharing the replaced ledger's history
            staged = stage_copy(fresh, ledger.vault.keys, "restore", str(live),
                                str(source_file))
            kept = None
            with backend.turn():  # no writer commits from the check to the mark
                now = backend.head()
                if (now.seq, now.hash) != (current.seq, current.hash):
                    raise InputError(
                        f"{live}: event {now.seq} was written while {source_file} was being "
                        "restored, and the restore would have dropped it; nothing was "
                        "restored. Run the restore again")
                # read in the turn: a backend switch records the file without an event,
                # so a record made while this restore waited moved no head to refuse
                _keep_file_sync(backend, fresh)
                if current.seq or backend.snapshot_seqs():
                    kept = default_backup_path(data_dir or live.parent, "replaced")
                    backend.backup_to(kept)
                backend.replace_with(fresh)
                finish_copy(ledger, staged)
        finally:
            fresh.close()
            remove_files(fresh_path)
    finally:
        source.close()
    # the restored head may be older than the head mark: verify reports that itself
    accepting, ledger.accept_older_head = ledger.accept_older_head, True
    try:
        return RestoreResult(ledger.verify(), kept)
    finally:
        ledger.accept_older_head = accepting
