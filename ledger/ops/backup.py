"""Backup and restore of a SQLite ledger file: an online, verified copy, and a restore
that checks the copy's chain before it replaces the ledger."""

from __future__ import annotations

from pathlib import Path

from ledger.core.chain import VerifyReport, verify_records
from ledger.engine.ledger import Ledger
from ledger.errors import (
    InputError,
    StoreError,
    VerificationError,
)


def backup(ledger: Ledger, target: Path) -> VerifyReport:
    """A consistent online copy (while writers run) in a new SQLite file, verified."""
    from ledger.backends.sqlite import SqliteBackend

    if target.exists():
        raise InputError(f"{target}: already exists; choose a new file for the backup")
    source = ledger.backend
    if isinstance(source, SqliteBackend):
        source.backup_to(target)
    else:
        from ledger.ops.transfer import copy_ledger

        copy_ledger(source, SqliteBackend(target))
    copy = SqliteBackend(target, read_only=True)
    try:
        report = verify_records(copy.read())
    finally:
        copy.close()
    return report


def restore(ledger: Ledger, source_file: Path, *, force: bool = False) -> VerifyReport:
    """Replace the ledger with a backup, after verifying the backup's chain. Refused
    (unless `force`) when that would drop events the backup does not have."""
    from ledger.backends.sqlite import SqliteBackend

    source = SqliteBackend(source_file, read_only=True)
    try:
        report = verify_records(source.read())
        if not report.ok:
            raise VerificationError(f"{source_file}: {report.problem}; nothing was restored",
                                    report.first_bad_seq)
        current = ledger.backend.head()
        if current.seq and not force:
            rec = source.record(current.seq)
            if rec is None or rec.hash != current.hash:
                raise InputError(
                    f"restoring {source_file} (head seq {report.head_seq}) would drop or "
                    f"replace events of this ledger (head seq {current.seq}); pass --force "
                    "to restore anyway")
        target = ledger.backend
        if isinstance(target, SqliteBackend):
            target.restore_from(source)
        else:
            raise StoreError(f"restore into a {target.name} ledger: use import-bundle into an "
                             "empty ledger instead")
    finally:
        source.close()
    ledger.reset_caches()
    return ledger.verify()
