"""`verify`: everything that is served must be vouched for by the log.

One rule: derived data is checked on use or covered here. Beyond the hash chain
(`ledger.core.chain`), this replays the whole log and compares with the replay every
snapshot, the head (PostgreSQL's head row, the engine's cached head) and the secrets
table; checks that the stored rows are exactly seq 1..N; and checks the head MAC and
the signed checkpoint (ledger.engine.head_vouch).

What a pass proves. Without a pinned key: the log is one unbroken chain from genesis,
nothing derived disagrees with it, and (with the ledger key here) the head MAC vouches
for every event, so a log re-chained by someone without the key fails. With a pinned
key (`expect_key`): also that the checkpoint is one this key signed, so a log
re-chained at or before it fails even where the ledger key is not at hand, and so
does a cut-off tail (the signed head is no longer in it); without the key, the events
after the checkpoint are named as a window only the head MAC vouches for. What no
check here can prove: that nobody truncated the log of a ledger verified without a
pin or --expect-head, and anything done by someone holding the ledger key.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

import msgspec

from ledger.backends.write_queue import writer_queue_problem
from ledger.core.chain import GENESIS, ChainWalk, VerifyReport
from ledger.core.events import (
    KIND_CHANGE,
    KIND_SHRED,
    SEALED_MARK,
    Record,
    decode_change_payload,
    decode_event,
    doc_path_text,
)
from ledger.core.secret_refs import DESTROYED_REF, SecretRef
from ledger.engine.format_check import FormatScan, format_problem
from ledger.engine.head_vouch import ADOPT_HINT
from ledger.engine.integrity_keys import (
    CHECKPOINT_EVERY,
    HEAD_MAC,
    HEAD_SIGNATURE,
    HeadMac,
    HeadSignature,
    IntegrityKeys,
)
from ledger.engine.vault import set_by_its_event
from ledger.errors import LedgerError, VerificationError
from projections.config_view import EMPTY_STATE, ConfigState, fold_changes
from projections.snapshots import MAGIC, canonical_state, decode_state, open_snapshot

if TYPE_CHECKING:
    from ledger.engine.ledger import Ledger

__all__ = ["audit"]

# what another kind of event (a shred) is to the replay: no change to the documents
_NO_CHANGE = b'{"changes":[]}'
_REPAIR = "run `moltis-ledger rebuild-snapshots` to rewrite the snapshots from the log"


class _FailedError(Exception):
    def __init__(self, seq: int | None, problem: str) -> None:
        super().__init__(problem)
        self.seq, self.problem = seq, problem


def audit(ledger: Ledger, expect_head: bytes | None = None, expect_key: str | None = None,
          track: Callable[[Iterator[Record]], Iterator[Record]] | None = None, *,
          adopting: bool = False) -> VerifyReport:
    """The full check. `expect_key` is a fingerprint (`ed25519:…`) the head must be
    signed with; `track` wraps the chain walk's records (a progress bar). `adopting`
    (the check `sign-head --adopt` runs first): a head not vouched for, or older than
    the head mark, is named in a note instead of failing, since the operator is about
    to vouch for it."""
    backend = ledger.backend
    scan = FormatScan()  # the first event that needs format 2 (a damaged one: the replay)
    notes: list[str] = []
    referenced: Referenced = {}
    chain, state, keys, failed = _walk_log(ledger, expect_head, track, notes, referenced,
                                           scan)
    if not chain.ok:
        return chain
    try:
        _check_rows(ledger, chain)
        if failed is not None:
            raise failed
        _check_head(ledger, chain, state)
        _check_secrets(ledger, referenced)
        fpr, signed, maced = _check_signature(ledger, chain, keys, expect_key, notes,
                                              adopting)
        _check_mark(ledger, chain, notes, adopting)
    except _FailedError as err:
        return msgspec.structs.replace(chain, ok=False, first_bad_seq=err.seq, problem=err.problem)
    # the format version is outside the chain, and this release reads the log either
    # way: what it says matters to an older release, so it is a note, not a failure
    stale = format_problem(backend, scan.sealed_seq, "event")
    if stale is not None:
        notes.append(stale)
    queue = writer_queue_problem(backend)  # not the ledger's integrity: a note, not a failure
    if queue is not None:
        notes.append(queue)
    return msgspec.structs.replace(chain, key_fingerprint=fpr, signed_seq=signed, mac_seq=maced,
                   notes=tuple(notes))


def _bad_seq(err: LedgerError, start: int) -> int:
    """The event a replay from `start` failed at: the one the error names (an event
    that does not decode), else `start`."""
    seq = err.seq if isinstance(err, VerificationError) else None
    return seq if isinstance(seq, int) else start


def _check_rows(ledger: Ledger, chain: VerifyReport) -> None:
    count, low, high = ledger.backend.seq_bounds()
    n = chain.head_seq
    if count == n and (n == 0 or (low, high) == (1, n)):
        return
    stray = low if low is not None and low < 1 else high
    # a row below seq 1 is invisible to every read: what it displaced is after the head
    raise _FailedError(n + 1, f"the events table holds {count} row(s) with seq {low}..{high}, but "
                         f"the chain is events 1..{n}: the row with seq {stray} is not part "
                         "of the log (inserted or moved)")


def _walk_log(ledger: Ledger, expect_head: bytes | None,
              track: Callable[[Iterator[Record]], Iterator[Record]] | None,
              notes: list[str], referenced: Referenced, scan: FormatScan
              ) -> tuple[VerifyReport, ConfigState, IntegrityKeys | None, Exception | None]:
    """One read of the log for the chain walk and the replay (figure i13c: reading and
    decoding every row twice was a third of verify): each event is replayed once the
    chain walk has proven it links, and every snapshot is compared with the replay on
    the way. Returns the chain's report, the replayed head, the integrity keys and the
    first snapshot or replay failure (or error reading a snapshot), which the caller
    reports only if the chain and the rows are sound, as when the chain was walked
    first: after one, only the chain walk goes on, to the end of the log. An error
    reading the log itself is raised as it comes."""
    backend = ledger.backend
    walk = ChainWalk(expect_head)
    records = backend.read()
    read_error: list[BaseException] = []
    last: list[Record | None] = [None]
    rows = _lean(walk.checked(track(records) if track else records), referenced, scan,
                 read_error, last)
    state = EMPTY_STATE
    try:
        keys = ledger.vault.integrity()
    except LedgerError:
        # no replay without the key's answer; the chain's report comes first
        deque(rows, maxlen=0)
        chain = walk.report()
        if not chain.ok:
            return chain, state, None, None
        raise
    failed: Exception | None = None
    outside: int | None = None
    toward: int | None = None  # the snapshot the replay is on its way to
    unsealed: list[int] = []
    try:
        for seq in backend.snapshot_seqs():
            snap = backend.snapshot_at(seq)
            if snap is None or snap.seq != seq:
                continue
            if seq >= 1:
                toward = seq
                state = _replay(state, islice(rows, seq - state.seq), last)
                toward = None
            if seq < 1 or state.seq != seq:  # the log ends before it (or the chain broke)
                outside = seq
                break
            _check_snapshot(snap.state, snap.hash, seq, state, keys, unsealed)
        else:
            state = _replay(state, rows, last)
    except (_FailedError, LedgerError) as err:
        if read_error:
            raise read_error[0] from None  # the log could not be read: as the chain walk did
        failed = err
    deque(rows, maxlen=0)  # the chain walk goes on to the end whatever the replay found
    chain = walk.report()
    if toward is not None and toward > chain.head_seq:
        outside = toward  # named before any replay past the end of the log, as always
    if outside is not None:
        failed = _FailedError(outside, f"snapshot {outside} is outside the log (events "
                                       f"1..{chain.head_seq}); {_REPAIR}")
    if unsealed:
        notes.append(f"{len(unsealed)} snapshot(s) carry no MAC (written before MACs, or "
                     f"without the ledger key) and are not used by readers; {_REPAIR}")
    if keys is None:
        notes.append("no ledger key here: snapshot MACs and the key that signed the head "
                     "were not checked against it")
    return chain, state, keys, failed


def _replay(state: ConfigState, changes: Iterable[tuple[int, bytes]],
            last: list[Record | None]) -> ConfigState:
    """`state` (a state of this replay's own, or the empty one) after `changes`, whose
    last record `_lean` leaves in `last`."""
    docs = ConfigState(0, GENESIS, 0, {}, {}, {}, {}) if state.seq == 0 else state
    try:
        fold_changes(docs, changes)
    except LedgerError as err:
        raise _FailedError(_bad_seq(err, state.seq + 1),
                           f"the log does not replay: {err}") from None
    rec = last[0]
    if rec is None or rec.seq == state.seq:
        return state  # no event read
    return ConfigState(rec.seq, rec.hash, rec.ts, docs.config, docs.keys, docs.prov_config,
                       docs.prov_keys)


def _check_snapshot(stored_blob: bytes, snap_hash: bytes, seq: int, state: ConfigState,
                    keys: IntegrityKeys | None, unsealed: list[int]) -> None:
    """One snapshot against the replay of the log up to its seq (`state`)."""
    blob = bytes(stored_blob)
    if not blob.startswith(MAGIC):
        unsealed.append(seq)
    elif keys is not None and open_snapshot(keys.snapshot_mac, seq, snap_hash,
                                            blob) is None:
        raise _FailedError(seq, f"snapshot {seq} fails its MAC check (edited, or not written "
                           f"with this ledger key); readers ignore it; {_REPAIR}")
    try:
        stored = decode_state(blob)
    except ValueError as err:
        raise _FailedError(seq, f"snapshot {seq} is unreadable ({err}); {_REPAIR}") from None
    if (snap_hash != state.hash or stored.seq != seq
            or canonical_state(stored) != canonical_state(state)):
        raise _FailedError(seq, f"snapshot {seq} does not match the replay of the log (its "
                           f"content was changed); {_REPAIR}")


def _check_head(ledger: Ledger, chain: VerifyReport, replayed: ConfigState) -> None:
    head = ledger.backend.head()
    if (head.seq, head.hash) != (chain.head_seq, chain.head_hash):
        raise _FailedError(head.seq, f"the stored head says event {head.seq} "
                                f"({head.hash.hex()[:16]}…) but the log ends at event "
                                f"{chain.head_seq} ({chain.head_hex[:16]}…): readers would "
                                "serve another config than the log's; restore from a backup")
    try:
        served = ledger.head_state()
    except VerificationError:
        return  # nothing is served from this head: the mark or MAC checks below name why
    if served.seq == replayed.seq and canonical_state(served) != canonical_state(replayed):
        raise _FailedError(served.seq, "the config this process serves differs from the replay "
                                  f"of the log; {_REPAIR}")


Referenced = dict[str, tuple[int, str, SecretRef]]  # ref -> (first seq, path, ref)


def _lean(records: Iterable[Record], found: Referenced, scan: FormatScan,
          read_error: list[BaseException], last: list[Record | None]
          ) -> Iterator[tuple[int, bytes]]:
    """The records as the fold's (seq, payload), one per event (another kind than a
    change folds as no change), while every secret reference in them is noted in
    `found` and each is shown to `scan` (only payloads that mention a secret are
    decoded here); the last record yielded is left in `last`. An undecodable payload is
    skipped here: the replay decodes it too, and names it. An error reading the records
    is noted in `read_error` (the replay must not report it as its own)."""
    try:
        for rec in records:
            seq, kind, payload = rec.seq, rec.kind, rec.payload
            last[0] = rec
            if kind != KIND_CHANGE:
                yield seq, _NO_CHANGE
                continue
            # only a change holding SEALED_MARK can need format 2 (`payload_format`):
            # the byte test first spares every other event the call (a tenth of verify)
            if SEALED_MARK in payload and not scan.done:
                scan.see(seq, kind, payload)
            # b'secret"' is in both a leaf's `"secret":` and a list's `"$secret":`
            # references
            if b'secret"' in payload:
                try:
                    changes = decode_change_payload(payload, seq).changes
                except LedgerError:
                    changes = []
                for c in changes:
                    for ref in c.refs():
                        if ref.ref not in found:
                            found[ref.ref] = (seq, doc_path_text(c.doc, c.path), ref)
            yield seq, payload
    except BaseException as err:
        read_error.append(err)
        raise


def _check_secrets(ledger: Ledger, referenced: Referenced) -> None:
    backend = ledger.backend
    for seq, where, ref in sorted(referenced.values(), key=lambda t: t[0]):
        if backend.secret(ref.ref) is None and not ref.ref.startswith(DESTROYED_REF):
            raise _FailedError(seq, f"secret fp:{ref.fp} (set at {where} by event {seq}) has "
                                    "no stored value and no shred event: its sealed row was "
                                    "deleted")
    for row in backend.secrets():
        if row.sealed is None:
            rec = backend.record(row.shredded_seq) if row.shredded_seq else None
            shredded = (rec is not None and rec.kind == KIND_SHRED
                        and any(r.ref == row.ref for r in decode_event(rec).shredded))
            if not shredded:
                raise _FailedError(row.shredded_seq, f"secret {row.ref[:8]}… is marked shredded at "
                                                f"seq {row.shredded_seq}, but no shred event "
                                                "there destroys it (a faked shred)")
        elif not set_by_its_event(backend, row):
            raise _FailedError(row.created_seq, f"secret {row.ref[:8]}… is not set by event "
                                           f"{row.created_seq} it claims: an orphaned row")


def _check_mark(ledger: Ledger, chain: VerifyReport, notes: list[str],
                adopting: bool) -> None:
    """The head against the head mark beside the ledger key (ledger.engine.head_mark):
    an older copy of the database put back fails, though its MAC and signature check."""
    problem = ledger.mark_problem(chain.head_seq, notes.append)  # an unusable mark: noted
    if problem is not None:
        # a writer that committed and marked a checkpoint since the chain was read has
        # its event in the log now; an older copy put back has not (ReadProof.check_mark)
        now = ledger.backend.head().seq
        if now > chain.head_seq:
            problem = ledger.mark_problem(now, notes.append)
    if problem is None:
        return
    if adopting:
        notes.append(problem)
        return
    raise _FailedError(chain.head_seq, problem)


def _check_signature(ledger: Ledger, chain: VerifyReport, keys: IntegrityKeys | None,
                     expect_key: str | None, notes: list[str], adopting: bool = False
                     ) -> tuple[str | None, int | None, int | None]:
    """The signed checkpoint and the MAC'd head: (fingerprint, signed seq, MAC'd seq).

    With the ledger key, the head MAC vouches for the whole log up to its seq, and a
    head it does not vouch for fails (unless `adopting`): the key here knows what the
    signing key is, so a missing or stale vouch is a forgery, or events by a writer
    without the key, or a ledger from before signing, to adopt once. Without it, only
    the signature can be checked: events after the signed checkpoint are named as a
    window that only the (here uncheckable) head MAC covers, and a window longer than
    any key holder leaves unsigned (CHECKPOINT_EVERY) fails a pinned verify."""
    n = chain.head_seq
    sig = _signature(ledger, chain, keys, expect_key)
    signed = sig.seq if sig is not None else None
    mac = _mac(ledger, chain, keys)
    maced = mac.seq if mac is not None and keys is not None else None
    fpr = sig.fingerprint if sig is not None else (keys.fingerprint if keys else None)
    if n == 0:
        return fpr, signed, maced
    if sig is None and mac is None:
        problem = ("the head is not signed (a ledger written before signing, or its "
                   f"signature was removed): {ADOPT_HINT}")
        if expect_key is not None and not adopting:
            raise _FailedError(n, "the head is not signed, so it cannot be checked against "
                                  f"the pinned key {expect_key}")
        if keys is not None and not adopting:
            raise _FailedError(1, "no event of this ledger is vouched for: the head is not "
                                  "signed and has no head MAC (a ledger written before "
                                  "signing, or its signature and MAC were removed and the "
                                  f"log possibly rewritten); {ADOPT_HINT}")
        notes.append(problem)
        return fpr, signed, maced
    if sig is None and expect_key is not None:
        raise _FailedError(n, "the head is not signed, so it cannot be checked against the "
                              f"pinned key {expect_key} (only a head MAC is stored)")
    if keys is not None:
        vouched = max(signed or 0, maced or 0)
        if vouched < n:
            problem = (f"events {vouched + 1}..{n} are not vouched for: appended after the "
                       f"vouched head (event {vouched}) without the ledger key, or forged")
            if not adopting:
                raise _FailedError(vouched + 1, f"{problem}; {ADOPT_HINT}")
            notes.append(f"{problem}; {ADOPT_HINT}")
        return fpr, signed, maced
    if signed is None:  # no key here and only a MAC: nothing this verify can check
        notes.append("the head is not signed, and its head MAC can be checked only with "
                     "the ledger key (not here)")
        return fpr, signed, maced
    if signed < n:
        if (mac is not None and (mac.seq, mac.hash) == (n, chain.head_hash)
                and expect_key is not None and n - signed > CHECKPOINT_EVERY):
            raise _FailedError(signed + 1, (
                f"events {signed + 1}..{n} come after the last signed checkpoint (event "
                f"{signed}): {n - signed} events, more than any holder of the ledger key "
                f"leaves unsigned ({CHECKPOINT_EVERY}), so the head MAC's claim for them "
                "(uncheckable here, without the ledger key) is not believed; check with "
                f"the ledger key: `moltis-ledger verify`"))
        if mac is not None and (mac.seq, mac.hash) == (n, chain.head_hash):
            notes.append(f"events {signed + 1}..{n} come after the last signed checkpoint "
                         f"(event {signed}): only the head MAC vouches for them, and it can "
                         "be checked only with the ledger key (not here)")
        else:
            problem = (f"events {signed + 1}..{n} are not vouched for: they come after the "
                       f"last signed checkpoint (event {signed}) and no head MAC covers them")
            if expect_key is not None:
                raise _FailedError(signed + 1, problem)
            notes.append(problem)
    return fpr, signed, maced


def _signature(ledger: Ledger, chain: VerifyReport, keys: IntegrityKeys | None,
               expect_key: str | None) -> HeadSignature | None:
    text = ledger.backend.get_meta(HEAD_SIGNATURE)
    if text is None:
        return None
    try:
        sig = HeadSignature.decode(text)
    except ValueError as err:
        raise _FailedError(chain.head_seq, f"{err}: it was changed") from None
    if not sig.valid(ledger.vault.ledger_id):
        raise _FailedError(chain.head_seq, f"the head signature (for event {sig.seq}) does not "
                                           "check: it was changed")
    rec = ledger.backend.record(sig.seq) if sig.seq else None
    if rec is None or rec.hash != sig.hash:
        raise _FailedError(min(sig.seq, chain.head_seq + 1),
                      f"the signed head (event {sig.seq}, {sig.hash.hex()[:16]}…) is not in "
                      "this log: the log was rewritten, re-chained or truncated")
    if keys is not None and sig.public != keys.public:
        raise _FailedError(sig.seq, f"the head is signed by {sig.fingerprint}, not by this ledger "
                               f"key ({keys.fingerprint}): someone re-signed a rewritten log")
    if expect_key is not None and sig.fingerprint != expect_key:
        raise _FailedError(sig.seq, f"the head is signed by {sig.fingerprint}, not by the pinned "
                               f"key {expect_key}")
    return sig


def _mac(ledger: Ledger, chain: VerifyReport, keys: IntegrityKeys | None) -> HeadMac | None:
    text = ledger.backend.get_meta(HEAD_MAC)
    if text is None:
        return None
    try:
        mac = HeadMac.decode(text)
    except ValueError as err:
        raise _FailedError(chain.head_seq, f"{err}: it was changed") from None
    if keys is None:
        return mac  # only its claim can be looked at (the window note)
    if not keys.mac_valid(ledger.vault.ledger_id, mac):
        raise _FailedError(chain.head_seq, f"the head MAC (for event {mac.seq}) does not check "
                                           "with this ledger key: it was changed or forged")
    rec = ledger.backend.record(mac.seq) if mac.seq else None
    if rec is None or rec.hash != mac.hash:
        raise _FailedError(min(mac.seq, chain.head_seq + 1),
                           f"the MAC'd head (event {mac.seq}, {mac.hash.hex()[:16]}…) is not "
                           "in this log: the log was rewritten, re-chained or truncated")
    return mac
