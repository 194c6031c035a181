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
    "ConfigStore": "ledger.stores.ledger_store",
    "LedgerConfigStore": "ledger.stores.ledger_store",
    "SqliteConfigStore": "ledger.stores.ledger_store",
    "MemoryConfigStore": "ledger.stores.ledger_store",
    "PostgresConfigStore": "ledger.stores.postgres_store",
    "FileConfigStore": "ledger.stores.file_store",
    "open_store": "ledger.ops.open_store",
    "ProviderStore": "ledger.stores.providers",
    "LedgerProviderStore": "ledger.stores.providers",
    "FileProviderStore": "ledger.stores.file_providers",
    "Commit": "ledger.engine.ledger",
    "Ledger": "ledger.engine.ledger",
    # schema and values
    "MoltisConfig": "ledger.schema",
    "Secret": "ledger.core.secret_refs",
    "SecretRef": "ledger.core.secret_refs",
    "Flags": "ledger.typed.layers",
    "Provenance": "ledger.typed.layers",
    "Event": "ledger.core.events",
    "Change": "ledger.core.events",
    "VerifyReport": "ledger.core.chain",
    "KeySource": "ledger.engine.vault",
    "acting_as": "ledger.core.actor",
    "check": "ledger.typed.check",
    "Problem": "ledger.typed.check",
    "parse_path": "ledger.core.keypaths",
    "format_path": "ledger.core.keypaths",
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
    from ledger.core.actor import acting_as
    from ledger.core.chain import VerifyReport
    from ledger.core.events import Change, Event
    from ledger.core.keypaths import format_path, parse_path
    from ledger.core.secret_refs import Secret, SecretRef
    from ledger.engine.ledger import Commit, Ledger
    from ledger.engine.vault import KeySource
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
    from ledger.ops.open_store import open_store
    from ledger.schema import MoltisConfig
    from ledger.stores.contract import ConfigStore, ProviderStore
    from ledger.stores.file_providers import FileProviderStore
    from ledger.stores.file_store import FileConfigStore
    from ledger.stores.ledger_store import LedgerConfigStore, MemoryConfigStore, SqliteConfigStore
    from ledger.stores.postgres_store import PostgresConfigStore
    from ledger.stores.providers import LedgerProviderStore
    from ledger.typed.check import Problem, check
    from ledger.typed.layers import Flags, Provenance
