"""moltis-config-ledger: the configuration of a Moltis gateway as an event-sourced,
hash-chained ledger (SQLite by default, PostgreSQL for several gateways, or the plain
`moltis.toml` file store).

Names are imported lazily (PEP 562) so `import ledger` stays cheap for the CLI and
`projections` can import ledger's lower modules without a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # stores
    "ConfigStore": "ledger.store",
    "LedgerConfigStore": "ledger.store",
    "SqliteConfigStore": "ledger.store",
    "MemoryConfigStore": "ledger.store",
    "PostgresConfigStore": "ledger.pg_store",
    "FileConfigStore": "ledger.file_store",
    "open_store": "ledger.open",
    "ProviderStore": "ledger.providers",
    "LedgerProviderStore": "ledger.providers",
    "FileProviderStore": "ledger.file_providers",
    "Commit": "ledger.engine",
    "Ledger": "ledger.engine",
    # schema and values
    "MoltisConfig": "ledger.schema",
    "Secret": "ledger.secrets",
    "SecretRef": "ledger.secrets",
    "Flags": "ledger.layers",
    "Provenance": "ledger.layers",
    "Event": "ledger.events",
    "Change": "ledger.events",
    "VerifyReport": "ledger.chain",
    "KeySource": "ledger.vault",
    "acting_as": "ledger.actor",
    "check": "ledger.convert",
    "Problem": "ledger.convert",
    "parse_path": "ledger.paths",
    "format_path": "ledger.paths",
    # errors
    "LedgerError": "ledger.errors",
    "InputError": "ledger.errors",
    "InvalidPathError": "ledger.errors",
    "ConfigValidationError": "ledger.errors",
    "ParseError": "ledger.errors",
    "InvalidRefError": "ledger.errors",
    "StoreError": "ledger.errors",
    "StoreBusyError": "ledger.errors",
    "ReadOnlyError": "ledger.errors",
    "FormatVersionError": "ledger.errors",
    "NotSupportedError": "ledger.errors",
    "BackendUnavailableError": "ledger.errors",
    "ConflictError": "ledger.errors",
    "VerificationError": "ledger.errors",
    "SecretError": "ledger.errors",
    "SecretKeyError": "ledger.errors",
    "SecretDestroyedError": "ledger.errors",
}

__all__ = [
    "BackendUnavailableError",
    "Change",
    "Commit",
    "ConfigStore",
    "ConfigValidationError",
    "ConflictError",
    "Event",
    "FileConfigStore",
    "FileProviderStore",
    "Flags",
    "FormatVersionError",
    "InputError",
    "InvalidPathError",
    "InvalidRefError",
    "KeySource",
    "Ledger",
    "LedgerConfigStore",
    "LedgerError",
    "LedgerProviderStore",
    "MemoryConfigStore",
    "MoltisConfig",
    "NotSupportedError",
    "ParseError",
    "PostgresConfigStore",
    "Problem",
    "Provenance",
    "ProviderStore",
    "ReadOnlyError",
    "Secret",
    "SecretDestroyedError",
    "SecretError",
    "SecretKeyError",
    "SecretRef",
    "SqliteConfigStore",
    "StoreBusyError",
    "StoreError",
    "VerificationError",
    "VerifyReport",
    "acting_as",
    "check",
    "format_path",
    "open_store",
    "parse_path",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from ledger.actor import acting_as
    from ledger.chain import VerifyReport
    from ledger.convert import Problem, check
    from ledger.engine import Commit, Ledger
    from ledger.errors import (
        BackendUnavailableError,
        ConfigValidationError,
        ConflictError,
        FormatVersionError,
        InputError,
        InvalidPathError,
        InvalidRefError,
        LedgerError,
        NotSupportedError,
        ParseError,
        ReadOnlyError,
        SecretDestroyedError,
        SecretError,
        SecretKeyError,
        StoreBusyError,
        StoreError,
        VerificationError,
    )
    from ledger.events import Change, Event
    from ledger.file_providers import FileProviderStore
    from ledger.file_store import FileConfigStore
    from ledger.layers import Flags, Provenance
    from ledger.open import open_store
    from ledger.paths import format_path, parse_path
    from ledger.pg_store import PostgresConfigStore
    from ledger.providers import LedgerProviderStore, ProviderStore
    from ledger.schema import MoltisConfig
    from ledger.secrets import Secret, SecretRef
    from ledger.store import ConfigStore, LedgerConfigStore, MemoryConfigStore, SqliteConfigStore
    from ledger.vault import KeySource
