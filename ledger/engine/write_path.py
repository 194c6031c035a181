"""The write path's helpers: what one append carries and how its secrets are sealed.

`Ledger.append` (ledger.engine.ledger) wraps each caller's request in an `Append`, and
its group commit (ledger.engine.group_commit) builds each event with a `TxnSealer` of
the group's write transaction; the text rule (no NUL in keys or values) is checked on
every change before it is encoded (`refuse_nul_changes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ledger.backends.base import WriteTxn
from ledger.core.events import Change, doc_path_text
from ledger.core.secret_refs import SecretRef
from ledger.core.text_rule import refuse_nul, refuse_nul_in
from ledger.engine.vault import Vault
from ledger.errors import InputError
from projections.config_view import ConfigState

if TYPE_CHECKING:
    from ledger.engine.group_commit import Request
    from ledger.engine.write_wait import WaitWork
    from ledger.typed.changes import Sealer

__all__ = ["Append", "Build", "JustSealed", "TxnSealer", "WriteDeps", "load_write_deps",
           "refuse_nul_changes"]


class TxnSealer:
    """Seals secrets into the current write transaction.

    It also opens what it sealed (`opener()`): the typed config built to validate
    the write holds the plain values of secrets at positions typed as plain text (a URL
    with a password, a sealed `args` element), and the vault cannot read rows of a
    transaction that is not committed yet."""

    __slots__ = ("_plain", "_seq", "_txn", "_vault")

    def __init__(self, vault: Vault, txn: WriteTxn, seq: int) -> None:
        self._vault, self._txn, self._seq = vault, txn, seq
        self._plain: dict[str, str] = {}

    def seal(self, plaintext: str) -> SecretRef:
        refuse_nul(plaintext, "a secret value")
        ref = self._vault.seal(self._txn, plaintext, self._seq)
        self._plain[ref.ref] = plaintext
        return ref

    def fingerprint(self, plaintext: str) -> str:
        return self._vault.fingerprint(plaintext, self._txn)

    def opener(self) -> JustSealed:
        return JustSealed(self._plain, self._vault)


class JustSealed:
    """Opens the secrets one write sealed (from memory), and any other from the vault."""

    __slots__ = ("_plain", "_vault")

    def __init__(self, plain: dict[str, str], vault: Vault) -> None:
        self._plain, self._vault = plain, vault

    def open_secret(self, ref: SecretRef) -> str:
        plain = self._plain.get(ref.ref)
        return plain if plain is not None else self._vault.open_secret(ref)

    def is_destroyed(self, ref: SecretRef) -> bool:
        return ref.ref not in self._plain and self._vault.is_destroyed(ref)


Build = Callable[[ConfigState, "Sealer"], Sequence[Change]]


class Append(NamedTuple):
    """What one caller asked `append` to do (see `Ledger.append`)."""

    build: Build
    actor: str
    reason: str
    source: str
    expected_seq: int | None
    rollback_to: int | None
    on_fold: Callable[[ConfigState], None] | None
    meta: dict[str, str] | None
    # what `build` will need of a state, made ready while waiting for the write lock
    # (ledger.engine.write_wait), so that little of it is left to do holding the lock
    prepare: Callable[[ConfigState], object] | None = None


class WriteDeps:
    """What every append uses, imported once by the first (`load_write_deps`) and kept
    here: an import statement in a function costs about a microsecond on each call, and
    an update went through three of them (issue 16)."""

    loaded = False
    Request: type[Request]
    WaitWork: type[WaitWork]
    resolve_actor: Callable[[str | None], str]
    check_reason: Callable[[str | None], str]
    # `Ledger.update_typed`'s (the typed layer), kept by its first call
    materialize: Callable[..., list[Change]] | None = None
    stale_view: type[Exception]  # head_cache.StaleView, set with materialize


def load_write_deps() -> None:
    """Import what a process's first append needs, before it takes the database's write
    lock: checkpoint signing (Ed25519) and sealing (AES-GCM) load `cryptography` (tens
    of ms on a cold start), and every other writer process would wait for that import.
    (Key derivation and the public key's bytes need no more than these two.) Once
    per process."""
    if WriteDeps.loaded:
        return
    # lazy: cryptography loads on the first write, not at CLI start-up
    import cryptography.hazmat.primitives.asymmetric.ed25519

    # lazy: cryptography loads on the first write, not at CLI start-up
    import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401

    # lazy: only a write names an actor; a read (`get`) starts without it
    from ledger.core.actor import check_reason, resolve_actor

    # lazy: only a write commits; a read (`get`) starts without it
    from ledger.engine.group_commit import Request

    # lazy: only a write that may wait for other processes' writers runs it
    from ledger.engine.write_wait import WaitWork

    WriteDeps.Request = Request
    WriteDeps.WaitWork = WaitWork
    WriteDeps.resolve_actor, WriteDeps.check_reason = resolve_actor, check_reason
    WriteDeps.loaded = True


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict | list | tuple):
        try:
            refuse_nul_in(value, "")
        except InputError:
            return True
    return False


def refuse_nul_changes(changes: Sequence[Change]) -> None:
    """The text rule (ledger.core.text_rule) for keys and values, on every backend. The
    error names the path; it is only spelled out when there is a NUL (append path)."""
    for c in changes:
        if not (_has_nul(c.value) or any("\x00" in key for key in c.path)):
            continue
        where = doc_path_text(c.doc, c.path)
        for key in c.path:
            refuse_nul(key, f"a key of the path {where!r}")
        refuse_nul_in(c.value, f"the value of {where}")
