"""The store contracts: `ConfigStore` (the async, backend-agnostic config store the seed
asks for) and `ProviderStore` (provider credentials, the same pattern), plus what their
implementations share (`run_write`, the `set` arguments of a provider entry).

Implementations: `ledger_store` (the ledger on SQLite or memory), `postgres_store`,
`file_store` and `file_providers` (Moltis's own files), `providers` (credentials in the
ledger).
"""

from __future__ import annotations

import abc
import builtins
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ledger.core.chain import VerifyReport
from ledger.core.document import Doc
from ledger.core.events import Event
from ledger.core.keypaths import KeyPath
from ledger.core.secret_refs import Secret
from ledger.engine.ledger import Commit
from ledger.engine.queries import Ref
from ledger.errors import InputError, NotSupportedError, OutcomeUnknownError, StoreBusyError
from ledger.typed.flags import NO_FLAGS, Flags

if TYPE_CHECKING:  # the schema and typed layer load on first use (the CLI starts fast)
    import asyncio

    from ledger.schema import MoltisConfig
    from ledger.typed.convert import RawChange
    from ledger.typed.layers import Provenance
    from projections.provider_view import EffectiveProvider, ProviderKey

__all__ = ["UNSET", "ConfigStore", "ProviderStore", "Ref", "check_name", "entry_changes",
           "run_write", "told_outcome"]

T = TypeVar("T")


async def run_write(call: Callable[[bool], T]) -> T:
    """Run a write in a worker thread, so the event loop keeps serving while it waits
    for the lock and for the commit's fsync (the calling task is suspended until the
    write is durable). `call(wait)` is the blocking write; the context (contextvars such
    as `acting_as`) travels with it.

    In the thread, the write is first tried without waiting for the lock (PostgreSQL's
    one-round-trip optimistic append; on SQLite a plain append when nobody holds the
    lock), then, if the lock is held, with waiting (SQLite: queued into this process's
    group commit, or polling another process's lock).

    Cancellation: the same contract as the writer thread's. A write whose worker thread
    has not started it yet is withdrawn (nothing written, plain `CancelledError`); once
    started it is committed or refused as a whole, and the cancelled task waits for that
    outcome, then gets a `CancelledError` saying which (`told_outcome`). A thread cannot
    be interrupted, so answering at once would let the write commit unannounced.

    Used by the PostgreSQL and file stores (a default-executor thread per write); the
    SQLite and memory ledger stores run their writes in the database's writer thread
    instead (`ledger.stores.writer`, see `LedgerConfigStore.run_write`)."""
    import asyncio  # imported here: the CLI's synchronous commands never need it

    gate = threading.Lock()  # `started` and `withdrawn` change together under it
    started = withdrawn = False

    def attempt() -> T:
        nonlocal started
        with gate:
            if withdrawn:
                raise asyncio.CancelledError("withdrawn before it started")
            started = True
        try:
            return call(False)
        except StoreBusyError:
            return call(True)

    # what asyncio.to_thread does, minus its wrapping task: the future itself is shielded
    context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(None, context.run, attempt)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with gate:
            if not started:
                withdrawn = True
                # the thread still ends the future with "withdrawn": taken here, or
                # asyncio logs it as an error nobody retrieved (review r17)
                future.add_done_callback(_retrieve)
                raise  # never started: nothing written
        raise asyncio.CancelledError(await told_outcome(future)) from None


def _retrieve(future: Any) -> None:
    if not future.cancelled():
        future.exception()


async def told_outcome(future: asyncio.Future[Any]) -> str:
    """Wait (through further cancellations) for the outcome of a write that was taken
    before its task was cancelled, and describe it for the `CancelledError` the task
    gets: committed (with the seq that `head_seq()`/`history()` confirm), refused
    (nothing written, and why) or no change."""
    import asyncio  # imported here: the CLI's synchronous commands never need it

    while True:
        try:
            commit = await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done():
                continue
            raise
        except OutcomeUnknownError as err:  # its connection lost while committing
            return f"cancelled; whether the write committed is not known: {err}"
        except Exception as err:
            return f"cancelled; the write was refused and nothing was written: {err}"
        if getattr(commit, "appended", False):
            return f"cancelled after the write was committed (seq {commit.seq})"
        return "cancelled; the write changed nothing"


class ConfigStore(abc.ABC):
    """Where a Moltis gateway's configuration lives. Every write takes `actor=`,
    `reason=` and an optional `expected_seq=` (optimistic concurrency)."""

    backend_name: str = "?"

    @abc.abstractmethod
    async def load_raw(self) -> MoltisConfig:
        """Schema defaults + the stored document, without environment or flags."""

    @abc.abstractmethod
    async def raw_document(self) -> Doc:
        """The stored document itself: only explicitly set keys, unknown keys included."""

    @abc.abstractmethod
    async def load_effective(self, *, flags: Flags = NO_FLAGS,
                             env: Mapping[str, str] | None = None) -> MoltisConfig:
        """defaults -> stored -> MOLTIS_* environment -> flags, with ${VAR} resolved."""

    @abc.abstractmethod
    async def source_metadata(self, *, flags: Flags = NO_FLAGS,
                              env: Mapping[str, str] | None = None) -> dict[str, Provenance]:
        """For every leaf path of the effective config, the layer that won and where from."""

    @abc.abstractmethod
    async def save_raw(self, cfg: MoltisConfig | Mapping[str, Any], *, actor: str | None = None,
                       reason: str | None = None, source: str = "api",
                       expected_seq: int | None = None) -> Commit:
        """Make the stored config equal `cfg`. A `MoltisConfig` changes only the paths
        that differ (unknown keys stay); a mapping is a whole raw document."""

    @abc.abstractmethod
    async def update_raw(self, fn: Callable[[MoltisConfig], Any], *, actor: str | None = None,
                         reason: str | None = None, source: str = "api",
                         expected_seq: int | None = None) -> Commit:
        """Read-modify-write under the store's lock: only the paths `fn` changed are
        recorded; nothing changed, or `fn` raising, or invalid values: nothing written.

        `fn` gets a private copy and may be called again on a fresh one when another
        writer appended first (the PostgreSQL backend's optimistic first try), so it
        should only edit the config it is given."""

    @abc.abstractmethod
    async def apply_changes(self, raw_changes: Sequence[RawChange], *,
                            actor: str | None = None, reason: str | None = None,
                            source: str = "api", expected_seq: int | None = None) -> Commit:
        """Apply path-level changes to the stored config (a set replaces what is at
        its path; tables are expanded into keys; validated like every write)."""

    async def edit(self, sets: Mapping[KeyPath, Any] | None = None, unsets: Sequence[KeyPath] = (),
                   **kw: Any) -> Commit:
        """Set values at paths and unset paths (what `moltis-ledger set/unset` does)."""
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.typed.convert import RawChange

        changes = [RawChange("unset", tuple(p)) for p in unsets]
        changes += [RawChange("set", tuple(p), v) for p, v in (sets or {}).items()]
        return await self.apply_changes(changes, **kw)

    async def save_effective(self, cfg: MoltisConfig, *, flags: Flags = NO_FLAGS,
                             env: Mapping[str, str] | None = None, **kw: Any) -> Commit:
        """Save a config that was read with `load_effective()`: only what the caller
        changed relative to the effective view is stored, so environment overrides,
        flags and substituted ${VAR} values are never written back (Moltis's
        `update_config` can write them into the file)."""
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.typed.convert import typed_changes

        effective = await self.load_effective(flags=flags, env=env)
        raw = await self.raw_document()
        return await self.apply_changes(typed_changes(effective, cfg, raw), **kw)

    @abc.abstractmethod
    async def head_seq(self) -> int:
        """A counter that moves on every write (the ledger's seq; the file store's own)."""

    async def close(self) -> None:
        return None

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # History features; backends that cannot offer them raise NotSupportedError.

    def _unsupported(self, what: str) -> NotSupportedError:
        return NotSupportedError(f"{what} is not supported by the {self.backend_name} backend; "
                                 "migrate to the ledger (moltis-ledger migrate)")

    async def load_raw_at(self, ref: Ref) -> MoltisConfig:
        raise self._unsupported("reading the past")

    async def history(self, *, path: str | KeyPath | None = None, actor: str | None = None,
                      since: Ref | None = None, until: Ref | None = None,
                      limit: int | None = None) -> list[Event]:
        raise self._unsupported("history")

    async def verify(self, expect_head: bytes | None = None) -> VerifyReport:
        raise self._unsupported("verify")

    def watch(self, poll_interval: float = 0.2,
              after: int | None = None) -> AsyncIterator[Event]:
        raise self._unsupported("watch")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[Any] = _Unset()
_FIELDS: Final = (("api_key", "apiKey"), ("base_url", "baseUrl"), ("models", "models"),
                  ("display_name", "displayName"))


def check_name(name: str) -> str:
    if (not isinstance(name, str) or not name.strip() or len(name) > 1000
            or any(ord(c) < 32 for c in name) or not _utf8(name)):
        raise InputError(f"provider name {repr(name)[:80]} must be a non-empty single-line "
                         "UTF-8 string of at most 1000 characters")
    return name


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def entry_changes(name: str, values: Mapping[str, Any]) -> list[RawChange]:
    """Raw changes to the keys document for `set(name, field=value, ...)`; None unsets."""
    # lazy: schema and decoders load on first use (CLI start-up)
    from ledger.typed.convert import RawChange

    out: list[RawChange] = []
    for attr, key in _FIELDS:
        value = values.get(attr, UNSET)
        if value is UNSET:
            continue
        if value is None:
            out.append(RawChange("unset", (name, key)))
            continue
        if attr == "models":
            if isinstance(value, str) or not all(isinstance(m, str) for m in value):
                raise InputError(f"providers {name}: models must be a list of strings")
            value = list(value)
        elif not isinstance(value, str | Secret):
            raise InputError(f"providers {name}: {attr} must be a string")
        out.append(RawChange("set", (name, key), value))
    return out


class ProviderStore(abc.ABC):
    """Where provider credentials live (the ledger, or provider_keys.json)."""

    backend_name: str = "?"

    @abc.abstractmethod
    async def list(self) -> dict[str, ProviderKey]: ...

    async def get(self, name: str) -> ProviderKey | None:
        return (await self.list()).get(name)

    @abc.abstractmethod
    async def set(self, name: str, *, api_key: str | Secret | None = UNSET,
                  base_url: str | Secret | None = UNSET, models: builtins.list[str] | None = UNSET,
                  display_name: str | None = UNSET, enable: bool = True,
                  actor: str | None = None, reason: str | None = None, source: str = "api",
                  expected_seq: int | None = None) -> Commit:
        """Change the given fields of one entry (None removes a field); other fields
        and entries are kept."""

    @abc.abstractmethod
    async def remove(self, name: str, *, actor: str | None = None, reason: str | None = None,
                     source: str = "api", expected_seq: int | None = None) -> Commit: ...

    @abc.abstractmethod
    async def import_keys(self, data: Mapping[str, Any], *, actor: str | None = None,
                          reason: str | None = None, source: str = "import") -> Commit:
        """Make the store hold exactly these entries (either provider_keys.json shape)."""

    @abc.abstractmethod
    async def effective(self, *, env: Mapping[str, str] | None = None,
                        flags: Flags = NO_FLAGS) -> dict[str, EffectiveProvider]:
        """What the gateway uses: config wins, key store fills gaps, environment on top."""

    async def source_metadata(self, *, env: Mapping[str, str] | None = None,
                              flags: Flags = NO_FLAGS) -> dict[str, dict[str, str]]:
        """provider -> field -> where the effective value came from."""
        return {n: dict(p.sources) for n, p in (await self.effective(env=env, flags=flags)).items()}

    async def history(self, name: str | None = None, *,
                      limit: int | None = None) -> builtins.list[Event]:
        raise NotSupportedError(f"history is not supported by the {self.backend_name} backend")

    async def list_at(self, ref: Ref) -> dict[str, ProviderKey]:
        raise NotSupportedError(
            f"reading the past is not supported by the {self.backend_name} backend")


