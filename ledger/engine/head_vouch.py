"""Vouching for the head: the head MAC on every append, the Ed25519 signature at
checkpoints, and the rule that ends trust on first use.

The rule: a writer vouches for (MACs, and at a checkpoint signs) a new head only when
the stored MAC or signature vouches, under this ledger key, for exactly the head it
appended onto, or when it wrote the ledger's first event itself onto an empty log with
nothing vouched. Anything else (a ledger never signed, a removed or malformed
signature, one made with another key, events appended past the vouched head by a
writer without the key) is written to unsigned with a loud warning: an ordinary write
never launders a history nobody vouched for. A history the stored MAC disowns (a log
rewritten under it), which every reader refuses, is not written to at all
(`Ledger._sign_head`). Vouching for an unvouched head is an operator's act after
checking it: `moltis-ledger sign-head --adopt` (`Ledger.sign_head(adopt=True)`),
which runs the full verify first.

What this costs on the append path: nothing to read when the parent is the head this
process (or another ledger of this process on the same database) vouched for last,
one keyed blake3 MAC (about a microsecond) and one meta row per transaction, and one
Ed25519 signature per checkpoint (the first append of a process, then every
CHECKPOINT_EVERY events or CHECKPOINT_SECS, and on close).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, Protocol

from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE, WriteTxn
from ledger.core.events import Record
from ledger.engine.integrity_keys import (
    CHECKPOINT_EVERY,
    CHECKPOINT_SECS,
    HeadMac,
    HeadSignature,
    IntegrityKeys,
)

__all__ = ["ADOPT_HINT", "HeadVoucher", "Judged", "judge_row", "mac_verdict",
           "signature_verdict", "unvouched"]

ADOPT_HINT = ("check it with `moltis-ledger verify`, then vouch for it with "
              "`moltis-ledger sign-head --adopt`")
GetMeta = Callable[[str], "str | None"]


class _Named(Protocol):
    """A head MAC or signature: the event it names."""

    @property
    def seq(self) -> int: ...
    @property
    def hash(self) -> bytes: ...


def unvouched(get_meta: GetMeta, keys: IntegrityKeys, ledger_id: bytes,
              head: tuple[int, bytes]) -> str | None:
    """Why neither the stored head MAC nor the stored signature vouches, under `keys`,
    for exactly `head` (seq, hash); None when one does, or when `head` is the empty
    log's genesis and nothing is vouched yet (a brand-new ledger)."""
    mac_text = get_meta(HEAD_MAC)
    seq = head[0]
    claims: list[tuple[int, bytes]] = []
    problems: list[str] = []
    if mac_text is not None:
        try:
            mac = HeadMac.decode(mac_text)
        except ValueError as err:
            problems.append(str(err))
        else:
            if not keys.mac_valid(ledger_id, mac):
                problems.append("the stored head MAC does not check with this ledger key")
            elif (mac.seq, mac.hash) == head:
                # vouched: the signature has nothing to add (not read: this is every
                # write after another process's, with the writers queued behind it)
                return None
            else:
                claims.append((mac.seq, mac.hash))
    sig_text = get_meta(HEAD_SIGNATURE)
    if mac_text is None and sig_text is None:
        if seq == 0:
            return None
        return ("the head is not signed (a ledger written before signing, or its "
                "signature was removed)")
    if sig_text is not None:
        try:
            sig = HeadSignature.decode(sig_text)
        except ValueError as err:
            problems.append(str(err))
        else:
            if sig.public != keys.public:
                problems.append(f"the stored head signature is by another key "
                                f"({sig.fingerprint}, not {keys.fingerprint})")
            elif not sig.valid(ledger_id):
                problems.append("the stored head signature does not check")
            elif (sig.seq, sig.hash) == head:
                return None
            else:
                claims.append((sig.seq, sig.hash))
    if claims:
        last = max(claims)
        if last[0] < seq:
            problems.append(f"the vouched head is event {last[0]}: events {last[0] + 1}.."
                            f"{seq} were appended without the ledger key, or forged")
        else:
            problems.append(f"the vouched head (event {last[0]}) is not this log's "
                            f"head (event {seq}): the log was rewritten or truncated")
    return "; ".join(problems) or "the head is not vouched for"


class Judged(NamedTuple):
    """What `judge_row` found: `outcome` is "unreadable" (`detail`: the decode error),
    "forged" (does not check with the key), "elsewhere" (names an event not in the log)
    or "vouches" (`after`: how many events of the log come after the named one)."""

    outcome: Literal["unreadable", "forged", "elsewhere", "vouches"]
    row: Any = None
    detail: str = ""
    after: int = 0


def judge_row(text: str, decode: Callable[[str], _Named], valid: Callable[[Any], bool],
              head: tuple[int, bytes], hash_at: Callable[[int], bytes | None], *,
              newer_ok: bool) -> Judged:
    """The one rule of the head MAC and the head signature: decode the row, check it
    with this ledger key, and place the event it names: `head` (seq, hash) itself, or an
    event of this log before it (a tail written without the key comes after it). With
    `newer_ok`, an event after `head` is in the log too: `hash_at` reads the log now, so
    a writer that committed since `head` was read (its MAC row and its events commit
    together) is there (the MAC); without it, only events up to `head` count (the
    signature, read only where no MAC row is)."""
    try:
        row = decode(text)
    except ValueError as err:
        return Judged("unreadable", detail=str(err))
    if not valid(row):
        return Judged("forged", row)
    if (row.seq, row.hash) == head:
        return Judged("vouches", row)
    if (newer_ok or row.seq < head[0]) and hash_at(row.seq) == row.hash:
        return Judged("vouches", row, after=max(head[0] - row.seq, 0))
    return Judged("elsewhere", row)


def mac_verdict(get_meta: GetMeta, keys: IntegrityKeys, ledger_id: bytes,
                head: tuple[int, bytes], hash_at: Callable[[int], bytes | None]
                ) -> tuple[str | None, int]:
    """(why the stored head MAC, checked with `keys`, proves that `head` (seq, hash) is
    not a descendant of the head it vouched for, or None; how many events of `head`'s
    log come after the MAC'd one).

    Disowned: a log rewritten, re-chained or truncated; a MAC row changed or forged.
    What a keyed open refuses, as `verify` does; the head mark catches an older genuine
    copy put back. Not disowned: a MAC for `head`, or for an earlier event of this very
    log (a tail appended by a writer without the key: unvouched, the count is how many
    events; a keyed open serves it with a warning), or no MAC row (the caller decides:
    ledger.engine.ledger refuses a keyed ledger with events and none). Costs one keyed
    blake3 MAC (and one event read when `head` is not the MAC'd one: a tail, or another
    writer's commit since `head` was read)."""
    text = get_meta(HEAD_MAC)
    if text is None:
        return None, 0
    judged = judge_row(text, HeadMac.decode, lambda mac: keys.mac_valid(ledger_id, mac),
                       head, hash_at, newer_ok=True)
    mac = judged.row
    if judged.outcome == "unreadable":
        return f"the stored head MAC is not readable ({judged.detail}): it was changed", 0
    if judged.outcome == "forged":
        return (f"the stored head MAC (for event {mac.seq}) does not check with this ledger "
                "key: it was changed or forged"), 0
    if judged.outcome == "elsewhere":
        return (f"the head MAC names event {mac.seq} ({mac.hash.hex()[:16]}…), which is not "
                f"in this log (its head is event {head[0]}): the log was rewritten, "
                "re-chained or truncated"), 0
    return None, judged.after


def signature_verdict(get_meta: GetMeta, keys: IntegrityKeys, ledger_id: bytes,
                      head: tuple[int, bytes], hash_at: Callable[[int], bytes | None]
                      ) -> tuple[str | None, int]:
    """mac_verdict for a ledger written with the key that has events and no head MAC
    row: every keyed append writes the row and a writer without the key leaves it
    behind, so only a ledger signed the old way (a signature on every append, no MAC)
    is vouched for, by a signature of this key for `head` or an earlier event of this
    log (the count: a tail appended without the key). Anything else: the row was
    deleted (typically with a rolled-back log), or the ledger got its key after its
    first events. Costs an Ed25519 check (cryptography), on this rare path only."""
    problem = (f"it was written with the ledger key (its key_check row) and has {head[0]} "
               "events, but no head MAC row vouches for them: the row was deleted (a log "
               "rolled back or rewritten leaves none), or the ledger got its key after its "
               "first events")
    text = get_meta(HEAD_SIGNATURE)
    if text is None:
        return problem, 0
    judged = judge_row(text, HeadSignature.decode,
                       lambda sig: sig.public == keys.public and sig.valid(ledger_id),
                       head, hash_at, newer_ok=False)
    if judged.outcome == "unreadable":
        return f"{problem}; {judged.detail}", 0
    if judged.outcome == "forged":
        return f"{problem}; the stored head signature is not this key's, or does not check", 0
    if judged.outcome == "elsewhere":
        return (f"{problem}; the head signature names event {judged.row.seq}, which is not "
                "in this log"), 0
    return None, judged.after


class HeadVoucher:
    """One ledger's memory of the head it vouched for last and of its last signature,
    and the checkpoint policy (ledger.engine.integrity_keys)."""

    __slots__ = ("_seen_signature", "checked", "every", "secs", "signed", "to_mark",
                 "vouched")

    def __init__(self, every: int = CHECKPOINT_EVERY, secs: float = CHECKPOINT_SECS) -> None:
        self.every, self.secs = every, secs
        self.vouched: tuple[int, bytes] | None = None  # the head this ledger MAC'd last
        # (seq, event time in us) of the last signature this ledger made; None: sign at
        # the next append (so a process's first append, a CLI write, is always signed)
        self.signed: tuple[int, int] | None = None
        # the head this ledger signed last and has not yet raised the head mark to
        # (ledger.engine.head_mark): done after the commit, if the head is in the log
        self.to_mark: tuple[int, bytes] | None = None
        # (seq, hash, public key) of another writer's head whose stored MAC this ledger
        # checked while waiting for the write lock (`checked_ahead`)
        self.checked: tuple[int, bytes, bytes] | None = None
        self._seen_signature: str | None = None  # the last signature row `_signed_at` read

    def knows(self, head: tuple[int, bytes], keys: IntegrityKeys,
              shared: dict[str, Any] | None) -> bool:
        """Did this ledger (or another of this process on this database, with the same
        key, in a group commit) vouch for exactly `head`? Then nothing is read."""
        if head == self.vouched or self.checked == (*head, keys.public):
            return True
        other = shared.get("vouched") if shared is not None else None
        return other is not None and other == (*head, keys.public)

    def checked_ahead(self, rows: dict[str, str], keys: IntegrityKeys, ledger_id: bytes,
                      head: tuple[int, bytes]) -> bool:
        """Outside the write lock (a writer waiting for its turn): do `rows`, the meta
        rows of one read, hold a head MAC for exactly `head` (seq, hash) that checks with
        `keys`? Then a write appended onto `head` needs no MAC read in its transaction
        (`knows`), as for a head this ledger vouched for itself: what the check proves
        (the key vouched for this head) stays true whatever is written after it."""
        text = rows.get(HEAD_MAC)
        if text is None:
            return False
        try:
            mac = HeadMac.decode(text)
        except ValueError:
            return False  # the transaction's own read names it
        if (mac.seq, mac.hash) != head or not keys.mac_valid(ledger_id, mac):
            return False
        self.checked = (*head, keys.public)
        return True

    def due(self, seq: int, ts: int) -> bool:
        last = self.signed
        return (last is None or seq - last[0] >= self.every
                or ts - last[1] >= self.secs * 1_000_000)

    def vouch(self, txn: WriteTxn, keys: IntegrityKeys, ledger_id: bytes, first: Record,
              last: Record, shared: dict[str, Any] | None) -> str | None:
        """In the write transaction that appended `first`..`last`: MAC `last` (and sign
        it at a checkpoint) if `first`'s parent is vouched; else nothing is written and
        the reason is returned. One MAC and at most one signature per transaction.

        The memory is updated before the commit: a rolled-back transaction leaves a
        vouched head that no parent will ever equal, and at worst a checkpoint one
        window later than due."""
        parent = (first.seq - 1, first.prev_hash)
        if not self.knows(parent, keys, shared):
            problem = unvouched(txn.get_meta, keys, ledger_id, parent)
            if problem is not None:
                return problem
        txn.set_meta(HEAD_MAC, keys.mac_head(ledger_id, last.seq, last.hash).encode())
        if self.due(last.seq, last.ts) and not self._signed_at(txn, keys, ledger_id, parent,
                                                              first.ts):
            txn.set_meta(HEAD_SIGNATURE, keys.sign_head(last.seq, last.hash, ledger_id).encode())
            self.signed = (last.seq, last.ts)
            self.to_mark = (last.seq, last.hash)
        self.remember((last.seq, last.hash), keys, shared)
        return None

    def _signed_at(self, txn: WriteTxn, keys: IntegrityKeys, ledger_id: bytes,
                   parent: tuple[int, bytes], ts: int) -> bool:
        """At a checkpoint this ledger would sign: did another writer (another process)
        sign exactly `parent` (seq, hash), the head this transaction appends onto, after
        this ledger's last signature? Then the checkpoint is that one, and the next is
        counted from it (`signed`; `ts`, this append's time, stands for the parent's):
        one checkpoint every CHECKPOINT_EVERY events of the ledger, whoever writes them,
        rather than one per writer process. Only a signature that checks counts (an
        Ed25519 check, about twice a signature's cost, once per window): a forged row
        must not hold back this writer's checkpoints, nor the head mark they raise."""
        last = self.signed
        if last is None:  # a process's first append always signs (a CLI write's one)
            return False
        text = txn.get_meta(HEAD_SIGNATURE)
        if text is None or text == self._seen_signature:
            return False
        self._seen_signature = text  # judged once
        try:
            sig = HeadSignature.decode(text)
        except ValueError:
            return False
        if (sig.version != "v2" or (sig.seq, sig.hash) != parent or sig.public != keys.public
                or sig.seq <= last[0] or not sig.valid(ledger_id)):
            return False
        self.signed = (sig.seq, ts)
        return True

    def sign(self, txn: WriteTxn, keys: IntegrityKeys, ledger_id: bytes, seq: int,
             hash_: bytes, ts: int, shared: dict[str, Any] | None) -> None:
        """Write the MAC and a signature for this head now (a checkpoint the caller has
        decided is vouched for)."""
        txn.set_meta(HEAD_MAC, keys.mac_head(ledger_id, seq, hash_).encode())
        txn.set_meta(HEAD_SIGNATURE, keys.sign_head(seq, hash_, ledger_id).encode())
        self.signed = (seq, ts)
        self.to_mark = (seq, hash_)
        self.remember((seq, hash_), keys, shared)

    def remember(self, head: tuple[int, bytes], keys: IntegrityKeys,
                 shared: dict[str, Any] | None) -> None:
        self.vouched = head
        if shared is not None:
            shared["vouched"] = (*head, keys.public)

    def unsigned_tail(self) -> bool:
        """Did this ledger vouch for a head after its last signature (close signs it)?"""
        return self.vouched is not None and (self.signed is None
                                             or self.signed[0] < self.vouched[0])


def drop_foreign_vouch(txn: WriteTxn, keys: IntegrityKeys, ledger_id: bytes) -> None:
    """In a copy being given a history of its own (a restore, an import): remove the
    head MAC row that does not check under `keys` and the head signature that is not
    theirs. Copied from another installation (or forged), they vouch for nothing here,
    and left in place every read refused the copy for good, `sign-head --adopt`
    included (review r15): without them its head is unsigned, and adopting it is the
    operator's call."""
    text = txn.get_meta(HEAD_MAC)
    if text is not None:
        try:
            ours = keys.mac_valid(ledger_id, HeadMac.decode(text))
        except ValueError:
            ours = False
        if not ours:
            txn.delete_meta(HEAD_MAC)
    text = txn.get_meta(HEAD_SIGNATURE)
    if text is not None:
        try:
            sig = HeadSignature.decode(text)
            ours = sig.public == keys.public and sig.valid(ledger_id)
        except ValueError:
            ours = False
        if not ours:
            txn.delete_meta(HEAD_SIGNATURE)
