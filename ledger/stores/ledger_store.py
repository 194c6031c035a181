"""`ConfigStore`: the backend-agnostic, async contract the seed asks for, and the
ledger-backed stores (`SqliteConfigStore`, `MemoryConfigStore`; PostgreSQL in
`ledger.backends.postgres`).

Async without paying for it: SQLite calls take microseconds, so the stores run them
inline on the event loop, and only a write that finds the lock held (another process is
appending) moves to a worker thread to wait for the busy timeout. A gateway's event loop
never blocks on another writer.
"""

from __future__ import annotations

import abc
import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, TypeVar

from ledger.backends.base import Backend
from ledger.backends.memory import MemoryBackend
from ledger.backends.sqlite import SqliteBackend, Synchronous
from ledger.core.chain import VerifyReport
from ledger.core.document import Doc, get_value
from ledger.core.events import Event
from ledger.core.keypaths import Path, parse_path
from ledger.core.when import parse_when
from ledger.engine.ledger import Commit, Ledger
from ledger.engine.vault import KeySource
from ledger.errors import InvalidRefError, NotSupportedError, StoreBusyError
from ledger.schema import MoltisConfig
from ledger.typed.convert import RawChange, typed_changes
from ledger.typed.layers import (
    NO_FLAGS,
    Effective,
    Flags,
    Provenance,
    effective_config,
    environment_key,
    provenance_map,
    referenced_variables,
)
from projections.config_view import ConfigState

if TYPE_CHECKING:
    from ledger.stores.providers import LedgerProviderStore

__all__ = ["ConfigStore", "LedgerConfigStore", "MemoryConfigStore", "SqliteConfigStore"]

T = TypeVar("T")
Ref = int | str | datetime


async def run_write(call: Callable[[bool], T]) -> T:
    """Try a write without waiting for the lock; if another writer holds it, wait for
    it in a worker thread so the event loop keeps running."""
    try:
        return call(False)
    except StoreBusyError:
        return await asyncio.to_thread(call, True)


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

    async def edit(self, sets: Mapping[Path, Any] | None = None, unsets: Sequence[Path] = (),
                   **kw: Any) -> Commit:
        """Set values at paths and unset paths (what `moltis-ledger set/unset` does)."""
        changes = [RawChange("unset", tuple(p)) for p in unsets]
        changes += [RawChange("set", tuple(p), v) for p, v in (sets or {}).items()]
        return await self.apply_changes(changes, **kw)

    async def save_effective(self, cfg: MoltisConfig, *, flags: Flags = NO_FLAGS,
                             env: Mapping[str, str] | None = None, **kw: Any) -> Commit:
        """Save a config that was read with `load_effective()`: only what the caller
        changed relative to the effective view is stored, so environment overrides,
        flags and substituted ${VAR} values are never written back (Moltis's
        `update_config` can write them into the file)."""
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

    async def history(self, *, path: str | Path | None = None, actor: str | None = None,
                      since: Ref | None = None, until: Ref | None = None,
                      limit: int | None = None) -> list[Event]:
        raise self._unsupported("history")

    async def verify(self, expect_head: bytes | None = None) -> VerifyReport:
        raise self._unsupported("verify")

    def watch(self, poll_interval: float = 0.2,
              after: int | None = None) -> AsyncIterator[Event]:
        raise self._unsupported("watch")


class LedgerConfigStore(ConfigStore):
    """A `ConfigStore` on the event-sourced ledger (any backend)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.backend_name = ledger.backend.name
        # set by open_store(): the files this ledger was imported from
        self.config_file: FsPath | None = None
        self.keys_file: FsPath | None = None
        self._providers: LedgerProviderStore | None = None
        self._eff_key: tuple[Any, ...] | None = None
        self._eff_state: ConfigState | None = None
        self._eff: Effective | None = None
        self._eff_bytes = b""
        self._vars_state: ConfigState | None = None
        self._vars: frozenset[str] = frozenset()
        self._meta_cache: dict[int, Event | None] = {}

    @property
    def providers(self) -> LedgerProviderStore:
        """Provider credentials in this ledger (reading a not-yet-imported
        provider_keys.json as a fallback when opened by open_store)."""
        if self._providers is None:
            from ledger.stores.providers import LedgerProviderStore

            self._providers = LedgerProviderStore(self, fallback_file=self.keys_file)
        return self._providers

    # -- reads -----------------------------------------------------------------------

    async def load_raw(self) -> MoltisConfig:
        return self.ledger.typed()

    async def view(self) -> MoltisConfig:
        """The head config as one shared instance (do not change it): the cheapest read."""
        return self.ledger.view()

    async def load_raw_at(self, ref: Ref) -> MoltisConfig:
        return self.ledger.typed(self.resolve_ref(ref))

    async def raw_document(self, at: Ref | None = None) -> Doc:
        state = self.ledger.head_state() if at is None else self.ledger.state_at(
            self.resolve_ref(at))
        return _deep_copy(state.config)

    def _effective(self, flags: Flags, env: Mapping[str, str] | None) -> Effective:
        state = self.ledger.head_state()
        if self._vars_state is not state:
            self._vars, self._vars_state = referenced_variables(state.config), state
        key = (state.seq, flags.key(), environment_key(env, self._vars))
        if self._eff is None or self._eff_state is not state or key != self._eff_key:
            self._eff = effective_config(state.config, env=env, flags=flags,
                                         opener=self.ledger.vault,
                                         where=f"ledger seq {state.seq}")
            self._eff_bytes = self.ledger.codec.encoder.encode(self._eff.config)
            self._eff_key, self._eff_state = key, state
        return self._eff

    async def load_effective(self, *, flags: Flags = NO_FLAGS,
                             env: Mapping[str, str] | None = None) -> MoltisConfig:
        self._effective(flags, env)
        return self.ledger.codec.decoder.decode(self._eff_bytes)

    async def source_metadata(self, *, flags: Flags = NO_FLAGS,
                              env: Mapping[str, str] | None = None) -> dict[str, Provenance]:
        eff = self._effective(flags, env)
        state = self.ledger.head_state()
        prov_tree = state.prov_config

        def origin(path: Path) -> Provenance | None:
            seq = get_value(prov_tree, path)
            if not isinstance(seq, int):
                return None
            return self._ledger_provenance(seq)

        return provenance_map(eff, state.config, origin)

    def _ledger_provenance(self, seq: int) -> Provenance:
        if seq not in self._meta_cache:
            if len(self._meta_cache) > 4096:
                self._meta_cache.clear()
            self._meta_cache[seq] = self.ledger.event(seq)
        ev = self._meta_cache[seq]
        if ev is None:
            return Provenance("ledger", f"seq {seq}", seq=seq)
        return Provenance(
            "ledger", f"seq {seq} by {ev.actor} at {ev.time.isoformat(timespec='seconds')}",
            seq=seq, actor=ev.actor, time=ev.time.isoformat(), reason=ev.reason or None,
        )

    async def head_seq(self) -> int:
        return self.ledger.head_state().seq

    # -- writes ----------------------------------------------------------------------

    async def save_raw(self, cfg: MoltisConfig | Mapping[str, Any], *, actor: str | None = None,
                       reason: str | None = None, source: str = "api",
                       expected_seq: int | None = None) -> Commit:
        kw: dict[str, Any] = {"actor": actor, "reason": reason, "source": source,
                              "expected_seq": expected_seq}
        if isinstance(cfg, MoltisConfig):
            return await run_write(lambda wait: self.ledger.save_typed(cfg, wait=wait, **kw))
        from ledger.core.document import normalize_document

        doc = normalize_document(cfg, "save_raw document")
        return await run_write(
            lambda wait: self.ledger.save_documents(doc, where="save_raw", wait=wait, **kw))

    async def apply_changes(self, raw_changes: Sequence[RawChange], *,
                            actor: str | None = None, reason: str | None = None,
                            source: str = "api", expected_seq: int | None = None) -> Commit:
        return await run_write(lambda wait: self.ledger.apply_raw(
            raw_changes, actor=actor, reason=reason, source=source,
            expected_seq=expected_seq, wait=wait))

    async def update_raw(self, fn: Callable[[MoltisConfig], Any], *, actor: str | None = None,
                         reason: str | None = None, source: str = "api",
                         expected_seq: int | None = None) -> Commit:
        return await run_write(lambda wait: self.ledger.update_typed(
            fn, actor=actor, reason=reason, source=source, expected_seq=expected_seq,
            wait=wait))

    # -- history ---------------------------------------------------------------------

    def resolve_ref(self, ref: Ref) -> int:
        return resolve_ref(self.ledger, ref)

    async def history(self, *, path: str | Path | None = None, actor: str | None = None,
                      since: Ref | None = None, until: Ref | None = None,
                      limit: int | None = None) -> list[Event]:
        """Events newest first, filtered by path prefix, actor and time/seq range."""
        return list(iter_history(self.ledger, path=path, actor=actor, since=since,
                                 until=until, limit=limit))

    async def verify(self, expect_head: bytes | None = None) -> VerifyReport:
        return self.ledger.verify(expect_head)

    async def watch(self, poll_interval: float = 0.2,
                    after: int | None = None) -> AsyncIterator[Event]:
        """New events as they are appended (by any process), in order, forever."""
        last = self.ledger.head_state().seq if after is None else after
        while True:
            state = self.ledger.head_state()
            if state.seq > last:
                for ev in self.ledger.events(after=last, until=state.seq):
                    last = ev.seq
                    yield ev
            await asyncio.sleep(poll_interval)

    async def close(self) -> None:
        self.ledger.close()


def resolve_ref(ledger: Ledger, ref: Ref) -> int:
    """A REF: a seq (`12`), `-N` (N events back from the head), `head`, or a time (the
    state as of that instant): ISO-8601 or words, see `ledger.core.when`."""
    head = ledger.head_state().seq
    if isinstance(ref, datetime):
        when = ref if ref.tzinfo else ref.replace(tzinfo=UTC)
        return ledger.seq_at_time(when)
    if isinstance(ref, int) and not isinstance(ref, bool):
        seq = ref
    elif isinstance(ref, str):
        text = ref.strip()
        if text.lower() in ("head", "latest"):
            return head
        if text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
            seq = head - int(text[1:])
            if seq < 0:
                raise InvalidRefError(f"REF {text}: the log has only {head} events")
            return seq
        if text.isascii() and text.isdigit():
            seq = int(text)
        else:
            moment = parse_when(text)
            if moment is None:
                raise InvalidRefError(
                    f"REF {ref!r} is not a seq (12), a relative seq (-3), 'head', an "
                    "ISO-8601 time (2026-11-24T09:00:00Z) or a UTC time in words "
                    "(yesterday, last tuesday 18:00, 2h ago)")
            return ledger.seq_at_time(moment)
    else:
        raise InvalidRefError(f"REF {ref!r} has an unsupported type")
    if not 0 <= seq <= head:
        raise InvalidRefError(f"REF {ref}: seq {seq} is outside the log (0..{head})")
    return seq


def iter_history(ledger: Ledger, *, path: str | Path | None = None, actor: str | None = None,
                 since: Ref | None = None, until: Ref | None = None,
                 limit: int | None = None, doc: str | None = None) -> Iterator[Event]:
    prefix = parse_path(path) if isinstance(path, str) else path
    lo = resolve_ref(ledger, since) if since is not None else 0
    hi = resolve_ref(ledger, until) if until is not None else None
    count = 0
    # `since` names a state: the events after it are the changes made since then.
    for ev in ledger.events(after=lo, until=hi, descending=True):
        if actor is not None and ev.actor != actor:
            continue
        if prefix is not None and not ev.touches(prefix, doc):
            continue
        yield ev
        count += 1
        if limit is not None and count >= limit:
            return


def _deep_copy(doc: Doc) -> Doc:
    return {k: _deep_copy(v) if isinstance(v, dict) else (list(v) if isinstance(v, list) else v)
            for k, v in doc.items()}


class SqliteConfigStore(LedgerConfigStore):
    """The ledger in a SQLite file (WAL, synchronous=FULL by default)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL",
                 busy_timeout: float = 5.0, read_only: bool = False,
                 keys: KeySource | None = None) -> None:
        backend = SqliteBackend(path, synchronous=synchronous, busy_timeout=busy_timeout,
                                read_only=read_only)
        super().__init__(Ledger(backend, keys=keys))
        self.path = backend.path


class MemoryConfigStore(LedgerConfigStore):
    """The ledger in memory: the reference backend, for tests and throwaway use."""

    def __init__(self, *, keys: KeySource | None = None,
                 backend: Backend | None = None) -> None:
        super().__init__(Ledger(backend or MemoryBackend(), keys=keys))

