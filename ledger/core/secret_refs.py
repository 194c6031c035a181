"""Secret values: the `Secret` type of the schema and the `SecretRef` stored in their place.

A `Secret` never shows its plaintext in `repr`, `str`, f-strings or JSON output; only
`reveal()` returns it. In the ledger a secret leaf of the raw document is a `SecretRef`
(a reference into the encrypted secrets table plus a keyed fingerprint), so events,
snapshots and logs never carry the value. This module is pure: no I/O, no keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import msgspec

from ledger.errors import SecretKeyError

__all__ = [
    "Secret",
    "SecretOpener",
    "SecretRef",
    "holds_mask",
    "is_ref_marker",
    "mask_text",
    "refs_at",
    "refs_in",
    "revive_markers",
]

# A masked secret in exports and JSON output. An importer recognises these placeholders
# and records "a secret with this fingerprint was withheld" instead of the mask text.
MASK_PREFIX = "<secret"
DESTROYED_PREFIX = "<secret destroyed"
# Stored references with no value behind them: imported from a masked export.
WITHHELD_REF = "withheld-"
DESTROYED_REF = "destroyed-"


class SecretRef(msgspec.Struct, frozen=True, rename={"ref": "$secret"}):
    """What the ledger stores where a secret value was: a reference and a fingerprint.

    `fp` is a keyed blake3 fingerprint: equal values have equal fingerprints under one
    ledger key, so history shows whether a key changed without revealing it.
    """

    ref: str
    fp: str

    def mask(self, *, destroyed: bool = False) -> str:
        return mask_text(self.fp, destroyed=destroyed)


def refs_in(value: Any) -> Iterator[SecretRef]:
    """Every stored reference in a document value: the value itself, or the references
    sealed inside a list (its elements, or the values of tables inside it).

    The walk of `refs_at` without the paths, kept apart on purpose: it runs for every
    change a write records and every leaf a mirror or export checks, and building it on
    `refs_at` (a path tuple per element) made it 1.4x slower on a list holding secrets
    and 2.9x on a bare reference (timeit, 2026-12-04)."""
    if value.__class__ is SecretRef:
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from refs_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from refs_in(item)


def refs_at(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], SecretRef]]:
    """`refs_in` with where each reference sits: (its key path, the reference), the
    path of `value` being `path` (a list element's key is its index as text)."""
    if value.__class__ is SecretRef:
        yield path, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from refs_at(item, (*path, str(i)))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from refs_at(item, (*path, key))


def is_ref_marker(value: Any) -> bool:
    """True for the JSON form of a reference, `{"$secret": ref, "fp": fp}`: how a
    reference sealed inside a list is stored in an event's value (and so a table no
    input may hold: it would pose as a sealed value)."""
    return (isinstance(value, Mapping) and len(value) == 2
            and isinstance(value.get("$secret"), str)
            and isinstance(value.get("fp"), str))


def revive_markers(value: Any) -> Any:
    """A stored list value with its reference markers made `SecretRef`s again."""
    if isinstance(value, list):
        return [revive_markers(v) for v in value]
    if isinstance(value, dict):
        if is_ref_marker(value):
            return SecretRef(ref=value["$secret"], fp=value["fp"])
        return {k: revive_markers(v) for k, v in value.items()}
    return value


def mask_text(fp: str | None, *, destroyed: bool = False) -> str:
    """The placeholder shown instead of a secret value."""
    prefix = DESTROYED_PREFIX if destroyed else MASK_PREFIX
    return f"{prefix} fp:{fp}>" if fp else f"{prefix}>"


def parse_mask(text: str) -> tuple[str, bool] | None:
    """(fingerprint, destroyed) of a mask placeholder, or None if `text` is not one."""
    for prefix, destroyed in ((DESTROYED_PREFIX, True), (MASK_PREFIX, False)):
        if text.startswith(f"{prefix} fp:") and text.endswith(">"):
            fp = text[len(prefix) + 4 : -1]
            return (fp, destroyed) if fp and ">" not in fp else None
    return None


def holds_mask(value: Any) -> bool:
    """A mask placeholder, or a list or table holding one (a sealed value shown, not
    its plaintext: a file that holds one was stripped or exported masked)."""
    if isinstance(value, str):
        return parse_mask(value) is not None
    if isinstance(value, list):
        return any(holds_mask(v) for v in value)
    return isinstance(value, dict) and any(holds_mask(v) for v in value.values())


class SecretOpener(Protocol):
    """Something that can turn a stored reference back into its plaintext (the vault)."""

    def open_secret(self, ref: SecretRef) -> str:
        """Return the plaintext, or raise SecretKeyError / SecretDestroyedError."""
        ...

    def is_destroyed(self, ref: SecretRef) -> bool: ...


class _Placeholder:
    """The opener of a mask placeholder read where no ledger resolves it (a masked
    moltis.toml served by the file store): nothing opens it, and the error says what it
    is, so a gateway never takes `<secret fp:…>` for the value (review r16: it would
    have sent the placeholder to the provider as its API key)."""

    def __init__(self, destroyed: bool) -> None:
        self.destroyed = destroyed

    def open_secret(self, ref: SecretRef) -> str:
        raise SecretKeyError(
            f"{ref.mask(destroyed=self.destroyed)} is a masked placeholder, not the secret: "
            "the file was masked by moltis-ledger (migrate, a masked export), and the value "
            "is in the ledger (or the migration backup); run the gateway on the ledger, or "
            "put the real value in the file")

    def is_destroyed(self, ref: SecretRef) -> bool:
        return self.destroyed


class Secret:
    """A secret configuration value (API key, token, password).

    Build one from plaintext with `Secret("sk-...")`; values read from the ledger are
    references that decrypt on `reveal()`, so a wrong or missing key only fails when a
    secret is actually read.
    """

    __slots__ = ("_opener", "_plain", "_ref")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret value must be a str")
        self._plain: str | None = value
        self._ref: SecretRef | None = None
        self._opener: SecretOpener | None = None

    @classmethod
    def stored(cls, ref: SecretRef, opener: SecretOpener | None) -> Secret:
        """A secret that lives in the ledger's secrets table."""
        self = cls.__new__(cls)
        self._plain = None
        self._ref = ref
        self._opener = opener
        return self

    @classmethod
    def placeholder(cls, text: str) -> Secret | None:
        """The secret a mask placeholder (`<secret fp:…>`) stands for, where nothing can
        open it: `reveal()` raises SecretKeyError saying so. None if `text` is not one."""
        mask = parse_mask(text)
        if mask is None:
            return None
        fp, destroyed = mask
        return cls.stored(SecretRef("", fp), _Placeholder(destroyed))

    def given(self) -> SecretRef | str:
        """What a write stores for this secret: its reference, or the text given, which
        for a mask placeholder (`placeholder`: its reference names no stored value, only
        the fingerprint its text gave) is that mask text, resolved where it is held."""
        if isinstance(self._opener, _Placeholder):
            return self.masked()
        return self._ref if self._ref is not None else self.reveal()

    @property
    def ref(self) -> SecretRef | None:
        """The stored reference, or None for a value not yet written to a ledger."""
        return self._ref

    @property
    def fingerprint(self) -> str | None:
        return self._ref.fp if self._ref is not None else None

    @property
    def is_destroyed(self) -> bool:
        """True when the value was shredded (or withheld by a masked export)."""
        if self._ref is None:
            return False
        if self._opener is None:
            return False
        return self._opener.is_destroyed(self._ref)

    def reveal(self) -> str:
        """The plaintext. Raises SecretKeyError or SecretDestroyedError when unavailable."""
        if self._plain is not None:
            return self._plain
        assert self._ref is not None
        if self._opener is None:
            raise SecretKeyError("this secret was read without access to the ledger's secrets")
        return self._opener.open_secret(self._ref)

    def masked(self) -> str:
        if self._ref is not None:
            return mask_text(self._ref.fp, destroyed=self.is_destroyed)
        return "<secret unsaved>"

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    __str__ = masked

    def __format__(self, spec: str) -> str:
        return format(self.masked(), spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        if self._ref is not None or other._ref is not None:
            return self._ref == other._ref
        return self._plain == other._plain

    __hash__ = None  # type: ignore[assignment]  # mutable-equality type, like a list

    def __reduce__(self) -> Any:
        # Pickling would carry plaintext to places redaction does not reach.
        raise TypeError("Secret values cannot be pickled")

