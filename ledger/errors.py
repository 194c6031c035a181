"""The library's exception tree. Every error the library raises is a `LedgerError`.

    LedgerError
    ├── InputError                  bad input: the message names the path, file or variable
    │   ├── InvalidPathError        a key path that cannot be parsed (`a..b`, empty)
    │   ├── ConfigValidationError   a value that does not fit the schema
    │   ├── ParseError              a file that is not valid TOML / JSON
    │   ├── InvalidRefError         a REF that is not a seq, a time or `-N`
    │   └── FileConflictError       a hand edit of moltis.toml and a later ledger change
    │                               touch the same key
    ├── StoreError                  the storage could not do what was asked
    │   ├── StoreBusyError          another writer held the lock past the busy timeout
    │   ├── OutcomeUnknownError     the connection was lost while a write was committing,
    │   │                           and whether it committed could not be read back
    │   ├── ReadOnlyError           the store is read-only (fallback mode, read-only media)
    │   ├── FormatVersionError      the database was written by a newer format
    │   ├── NotSupportedError       this backend cannot offer the feature (history on a file)
    │   ├── UnsafePathError         a write target that could be redirected (a link, a
    │   │                           directory others can write to); names path and reason
    │   └── BackendUnavailableError an optional extra is not installed
    ├── ConflictError               `expected_seq` no longer matches the head
    ├── VerificationError           the hash chain is broken (carries the first bad seq)
    └── SecretError                 a secret value cannot be produced
        ├── SecretKeyError          the ledger key is missing or wrong
        │   └── WrongKeyError       a key is held, and nothing of this ledger opens with it
        └── SecretDestroyedError    the value was shredded

Driver errors (apsw, psycopg, OSError) are translated once, at the backend boundary,
with `raise ... from err`. Messages never contain secret values.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error raised by moltis-config-ledger."""


class InputError(LedgerError, ValueError):
    """Bad input from a caller, a file or the environment."""


class InvalidPathError(InputError):
    """A configuration key path that cannot be parsed."""


class ConfigValidationError(InputError):
    """A configuration value does not fit the schema; `path` names where."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ParseError(InputError):
    """A configuration file is not valid TOML or JSON; the message names the file."""


class InvalidRefError(InputError):
    """A REF (seq, ISO-8601 time or -N) that cannot be resolved."""


class FileConflictError(InputError):
    """moltis.toml was edited by hand where the ledger changed since the last import."""


class StoreError(LedgerError):
    """The storage backend failed."""


class StoreBusyError(StoreError):
    """Another writer held the lock for longer than the busy timeout."""


class StateMovedError(StoreBusyError):
    """A copy of one state of a live ledger (a bundle, a backup) met a key rotation, a
    history fork (a restore) or a shred between its reads: nothing was written; reading
    again gives a state that holds it (`ledger.ops.live_state`)."""


class OutcomeUnknownError(StoreError):
    """A write's commit was sent and the connection lost before its reply, and the log
    could not be read to tell whether it committed: it may have. Check the head
    (`head_seq()`, `moltis-ledger log`) before repeating a write that is not idempotent."""


class ReadOnlyError(StoreError):
    """The store was opened read-only, or the medium refuses writes."""


class FormatVersionError(StoreError):
    """The database uses a newer format than this version understands."""


class NotSupportedError(StoreError):
    """The backend cannot offer this feature (for example history on a file store)."""


class UnsafePathError(StoreError):
    """A file was not written because its place is unsafe: the target is a symbolic
    link or exists when it must not, or its directory is owned by someone else or is
    world-writable without the sticky bit. The message names the path and the reason."""


class BackendUnavailableError(StoreError):
    """An optional dependency of the selected backend is not installed."""


class ConflictError(LedgerError):
    """An optimistic write found the ledger at another seq than `expected_seq`."""

    def __init__(self, expected_seq: int, actual_seq: int) -> None:
        super().__init__(
            f"conflict: the store moved on since it was read (expected version "
            f"{expected_seq}, found {actual_seq}); read it again and retry"
        )
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq


class VerificationError(LedgerError):
    """The hash chain does not verify; `seq` is the first bad event."""

    def __init__(self, message: str, seq: int | None) -> None:
        super().__init__(message)
        self.seq = seq


class SecretError(LedgerError):
    """A secret value cannot be produced."""


class SecretKeyError(SecretError):
    """The ledger key is missing or does not open the stored secrets."""


class WrongKeyError(SecretKeyError):
    """A ledger key is held, does not match the key check, and nothing of this ledger
    opens with it (ledger.engine.key_proof): read as without a key, with a warning."""


class SecretDestroyedError(SecretError):
    """The secret's value was shredded; history still shows it existed."""
