"""Moving a ledger between backends: SQLite to PostgreSQL and back.

`copy_ledger(source, target)` copies every event (in batches), every snapshot and
secret row, and the meta values that give the ledger its identity, into an EMPTY target,
then verifies the target's chain. The chain covers only stored column values, never
anything backend-specific, so the head hash is the same on both sides; the copy keeps the
ledger's id and key check, so its secrets open with the same ledger key.

The source is verified before anything is written (a broken chain is not copied), and
a target that already holds anything is refused. The copy is one transaction of the
target: interrupted or refused halfway (an event no backend can store), it leaves the
target empty. Open stores on the target after the copy (a store reads the ledger's id
when it opens).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, NamedTuple

from ledger._log import get_logger
from ledger.backends.base import Backend, Head
from ledger.core.chain import VerifyReport, verify_records
from ledger.core.events import Record
from ledger.engine.integrity_keys import HEAD_MAC, HEAD_SIGNATURE, HISTORY_ID
from ledger.engine.ledger import Ledger
from ledger.engine.vault import KeySource
from ledger.errors import StoreError, VerificationError
from ledger.ops.import_checks import checked_records
from ledger.ops.live_state import (
    READ_TRIES,
    key_rows,
    moved_error,
    replaced,
    secrets_as_of,
    vouches_up_to,
)

__all__ = ["StagedCopy", "check_empty", "copy_ledger", "copy_ledger_files", "finish_copy",
           "open_backend", "stage_copy"]

_log = get_logger("ledger.ops.transfer")
BATCH: Final = 1000
# What makes a ledger itself (its id seals the secrets; the key check tells a wrong key;
# after a rotation, the sealed fingerprint key keeps fingerprints the same)
# and what migrate() remembers of the files it imported. Other meta values are
# per-database (format_version is written by each backend at creation).
COPIED_META: Final = ("ledger_id", "created_us", "key_check", "fp_key", "import.config.leaves",
                      "import.keys.leaves", HEAD_SIGNATURE, HEAD_MAC, HISTORY_ID)


def _meta_of(backend: Backend) -> dict[str, str]:
    return {k: v for k, v in backend.meta_items().items()
            if k in COPIED_META or k.startswith("import.")}


def check_empty(target: Backend) -> None:
    """StoreError unless `target` is empty: no events, snapshots, secrets or key rows."""
    head = target.head()
    what = []
    if head.seq:
        what.append(f"{head.seq} events")
    if target.snapshot_seqs():
        what.append("snapshots")
    if next(iter(target.secrets()), None) is not None:
        what.append("secrets")
    if any(target.get_meta(k) is not None for k in COPIED_META
           if k not in ("ledger_id", "created_us")):
        what.append("a ledger key or imported files")
    if what:
        raise StoreError(f"{target.location}: the target ledger is not empty ({', '.join(what)});"
                         " copy only into a new, empty ledger")


def _batches(records: Iterator[Record]) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_ledger(source: Backend, target: Backend) -> VerifyReport:
    """Copy `source` into the empty `target`; return the target's chain report.

    All or nothing: everything is written in one transaction of the target, and every
    event passes the checks of an import (ledger.ops.import_checks: text every backend
    stores, decodable payloads, sane times) before it commits. Raises VerificationError
    if the source does not verify or an event fails a check (nothing is written), or if
    the copy does not arrive intact with the same head hash; StoreError if the target
    is not empty. Only rows are copied, never a file's foreign schema objects.

    The source may be live: what is copied is one state of it (`ledger.ops.live_state`):
    a copy that met a key rotation, a fork or a shred is rolled back and made again
    (StateMovedError after READ_TRIES)."""
    if target.read_only:
        raise StoreError(f"{target.location}: the target was opened read-only")
    check_empty(target)
    for _ in range(READ_TRIES):
        before = _copy_state(source, target)
        if before is not None:
            break
    else:
        raise moved_error(source.location, "it was being copied")
    after = verify_records(target.read())
    if not after.ok or after.head_hash != before.head_hash or after.events != before.events:
        raise VerificationError(
            f"{target.location}: the copy does not verify "
            f"({after.problem or f'head {after.head_hex[:16]}… != {before.head_hex[:16]}…'})",
            after.first_bad_seq)
    _log.info("ledger copied", source=source.location, target=target.location,
              events=after.events, head=after.head_hex)
    return after


class _MovedError(Exception):
    """The source's key rows changed while its rows were copied: roll the copy back."""


def _copy_state(source: Backend, target: Backend) -> VerifyReport | None:
    """One try of `copy_ledger`: the source's report of what was copied (committed), or
    None when the source moved under it (nothing written). A chain that broke, or
    events past the head, because a restore replaced the log while it was read are a
    reason to read again, not damage."""
    head, meta = _head_and_meta(source)
    try:
        return _copy_from(source, target, head, meta)
    except VerificationError:
        if replaced(source, head):
            return None
        raise


def _copy_from(source: Backend, target: Backend, head: Head, meta: dict[str, str]
               ) -> VerifyReport | None:
    before = verify_records(source.read(until=head.seq))
    if not before.ok:
        raise VerificationError(f"{source.location}: the source does not verify ({before.problem});"
                                " nothing was copied", before.first_bad_seq)
    if before.head_seq != head.seq or before.head_hash != head.hash:
        return None  # the log was replaced meanwhile (a restore): read it again
    _refuse_events_past(source, head)
    secrets = secrets_as_of(source, head.seq)
    if secrets is None:
        return None
    records = checked_records(source.read(until=head.seq), source.location)
    try:
        with target.write() as txn:
            for key, value in meta.items():
                txn.set_meta(key, value)
            for batch in _batches(records):
                txn.append(batch)
            for seq in source.snapshot_seqs():
                snap = source.snapshot_at(seq)
                if snap is not None and snap.seq == seq and seq <= head.seq:
                    txn.put_snapshot(snap.seq, snap.hash, snap.state)
            for row in secrets:
                # a shredded secret stays shredded: the row says it existed, not its value
                txn.put_secret(row.ref, row.sealed or b"", row.created_seq)
                if row.sealed is None:
                    txn.shred_secret(row.ref, row.shredded_seq or row.created_seq)
            if key_rows(source.meta_items()) != key_rows(meta):
                raise _MovedError  # snapshots and sealed rows of two keys: none of this commits
    except _MovedError:
        return None
    return before


def _refuse_events_past(source: Backend, head: Head) -> None:
    """VerificationError when the log holds an event after `head` that no head names:
    PostgreSQL's head row moved back (tampered or damaged; the read path refuses such a
    ledger too). A writer's append moves the head row with its event, so an event past
    `head` that a head read after it covers is a writer's, not left behind."""
    tail = next(iter(source.read(after=head.seq, limit=1)), None)
    if tail is not None and source.head().seq < tail.seq:
        raise VerificationError(
            f"{source.location}: event {tail.seq} is in the log after its head (event "
            f"{head.seq}): the head was moved back (tampered or damaged); run "
            "`moltis-ledger verify`; nothing was copied", tail.seq)


def _head_and_meta(source: Backend) -> tuple[Head, dict[str, str]]:
    """The source's head and the meta rows copied with it, read until the head MAC and
    signature name no later event (a writer committing between the two reads: review
    r18, the copy would carry a MAC of an event it lacks); rows that still do are left
    out (the copy is then unvouched, as a tail appended without the key)."""
    for _ in range(READ_TRIES):
        head, meta = source.head(), _meta_of(source)
        if all(vouches_up_to(k, v, head.seq) for k, v in meta.items()):
            return head, meta
    return head, {k: v for k, v in meta.items() if vouches_up_to(k, v, head.seq)}


def open_backend(url: str, *, schema: str = "public", create: bool = True) -> Backend:
    """A backend from a path (SQLite) or a postgresql:// DSN: ledger.backends.open's rule."""
    # lazy: this module's open_backend wraps it (same name)
    from ledger.backends.open import open_backend as opened

    return opened(url, schema=schema, create=create)


@contextmanager
def _opened(url: str, schema: str, create: bool) -> Iterator[Backend]:
    backend = open_backend(url, schema=schema, create=create)
    try:
        yield backend
    finally:
        backend.close()


def copy_ledger_files(src_url: str, dst_url: str, *, src_schema: str = "public",
                      dst_schema: str = "public") -> VerifyReport:
    """`copy_ledger` between two locations, each a SQLite path or a postgresql:// DSN
    (with the PostgreSQL schema given separately)."""
    with _opened(src_url, src_schema, False) as source, \
            _opened(dst_url, dst_schema, True) as target:
        return copy_ledger(source, target)


class StagedCopy(NamedTuple):
    head: Head  # the copy's head once staged (the restore's or import's own event)
    mark: tuple[int, bytes] | None  # where the head mark is to move (None: unsigned)


def stage_copy(copy: Backend, keys: KeySource, source: str, live: str, origin: str
               ) -> StagedCopy:
    """Make a copy ready before it replaces anything (a restore's staged file, an
    import's staging file), all of it in the copy: its head signed if the source's own
    head MAC or signature (copied with the rows) vouches for it under `keys`, a history
    of its own (Ledger.fork_history), its snapshots sealed under that history. Done in
    the live ledger after the swap, a crash between the two left the copy sharing the
    history it was copied from, whose snapshots (same key) then checked in it: the
    splice of review r8's finding 1, reopened. The head mark is not touched here (the
    live ledger does not have the copy's head yet): where it is to move is returned with
    the staged head, for `finish_copy`.

    A head nobody vouched for (an edited backup, a bundle from another key or from
    before signing) stays unsigned until `moltis-ledger sign-head --adopt` (a warning
    says why, naming `live`, the ledger the copy is for: the staged file is not the
    operator's), so a restore is no way back to trust on first use. Refused first
    (`origin`, the backup or bundle, is named): a restore every read would refuse, and
    an import whose own head MAC or signature under this key names another head (a
    forgery: review r15). An import's MAC and signature rows of another key vouch for
    nothing here and are dropped (`Ledger.drop_foreign_vouch`): its head is
    unsigned, and the head mark beside the key (the original ledger's, same ledger id)
    says nothing about the copy."""
    staged = Ledger(copy, keys=keys)
    if source == "restore" or staged.drop_foreign_vouch():  # an import: its own rows only
        _refuse_disowned(staged, source, origin)
    staged.hold_marks = True
    try:
        staged.sign_head(accept_older=True)  # the head mark moves back to it: held
    except VerificationError as err:
        _log.warning(str(err).replace(copy.location, live), location=live)
    # then a history of its own, vouched as far as the copy's own MAC vouched: an
    # operator adopting an unvouched one later must not revive another's snapshots
    staged.fork_history(f"{source}: this copy's own history starts here", source)
    if staged.vault.integrity() is not None:
        staged.rebuild_snapshots()  # sealed under the new history
    return StagedCopy(copy.head(), staged.held_mark)


def _refuse_disowned(staged: Ledger, source: str, origin: str) -> None:
    """Refused when every keyed read would refuse the copy's head: its own head MAC or
    signature names another event (a log re-chained under them: review r8 finding 4
    for a restore, r15 finding 1 for an import), so a restore never swaps a ledger that
    reads for one that does not, and an import never signs a forgery. A head nothing
    vouches for that readers serve (one from before signing) goes on, unsigned."""
    head = staged.backend.head()
    problem = staged.proof.mac_problem(head)
    if problem is None:
        return
    if source == "restore":
        done, check = "restored", (f"Check the backup with `moltis-ledger --db {origin} "
                                   "verify`, or restore an older one")
    else:
        done, check = "imported", f"Check the bundle with `moltis-ledger verify-bundle {origin}`"
    raise VerificationError(
        f"{origin}: its head is not the history its head MAC or signature vouches for "
        f"({problem}); every read would refuse it, so nothing was {done}. {check}", head.seq)


def finish_copy(ledger: Ledger, staged: StagedCopy) -> None:
    """After the staged copy replaced `ledger`'s content: forget what was cached of the
    replaced one, and move the head mark to the copy's signed head, if it was signed:
    back, when it is older (the operator restored it), but only while the staged head
    is still the head: a writer's head after it (and the mark its checkpoint raised)
    is never disowned (review r10)."""
    ledger.reset_caches()
    if staged.mark is not None:
        ledger.proof.raise_mark_to(staged.mark, lower=ledger.backend.head() == staged.head)
