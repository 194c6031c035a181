"""The ledger-backed config stores (`SqliteConfigStore`, `MemoryConfigStore`; PostgreSQL in
`ledger.backends.postgres`).

Threading model. Every write (`update_raw`, `save_raw`, `apply_changes`, `edit`, the
provider writes) runs off the event loop in the database's writer thread
(`ledger.stores.writer`: one thread per database and process, shared by its stores,
started by the first async write and joined when the last of those stores closes),
with the caller's contextvars (such as `acting_as`): the lock wait, `fn` of
`update_raw`, the statements and the commit's fsync never run on the loop. The writer
commits the writes queued meanwhile in groups (`ledger.engine.group_commit`): one
transaction and one fsync per group, each write with its own event, seq and conflict
check, each acknowledged only once it is durable and failing only for its own caller;
synchronous `Ledger` writers of other threads join the same groups. Cancelling a
waiting task withdraws its write if the writer has not taken it yet, else the task
waits for the write's outcome and gets a `CancelledError` saying what it was (see
`ledger.stores.writer`). `close()` lets the writer finish what was queued before the
ledger closes. The PostgreSQL store keeps `run_write` (a default-executor thread per
write, for its one-round-trip optimistic append). Reads (`load_effective`, `view`,
`load_raw`, `raw_document`) stay on the loop: from the
warm cache they cost microseconds (one `data_version` check); a read that arrives while
this store's own connection is committing waits for that commit (at most one fsync),
and a read after another process's write replays only its tail. `Ledger` and the
backends are thread-safe; nothing here needs a lock of the caller's.
"""

from __future__ import annotations

import contextvars
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ledger.backends.base import Backend
from ledger.backends.sqlite import SqliteBackend, Synchronous
from ledger.core.chain import VerifyReport
from ledger.core.document import Doc, copy_value, get_value, normalize_document
from ledger.core.events import Event
from ledger.core.keypaths import KeyPath
from ledger.core.wiring import wiring_table
from ledger.engine.ledger import Commit, Ledger
from ledger.engine.queries import Ref, iter_history, resolve_ref
from ledger.engine.vault import KeySource
from ledger.errors import InputError
from ledger.stores.contract import ConfigStore, run_write
from ledger.typed.flags import NO_FLAGS, Flags
from projections.config_view import ConfigState

if TYPE_CHECKING:
    from types import ModuleType

    from ledger.schema import MoltisConfig
    from ledger.stores.providers import LedgerProviderStore
    from ledger.stores.writer import Writer
    from ledger.typed.convert import RawChange
    from ledger.typed.head_cache import TypedCodec
    from ledger.typed.layers import Effective, Provenance

_layers_module: ModuleType | None = None


def _layers() -> ModuleType:
    """`ledger.typed.layers`, imported on the first effective read: opening a store to
    read its raw document (`moltis-ledger get`) does not load the schema."""
    global _layers_module  # noqa: PLW0603
    if _layers_module is None:
        import ledger.typed.layers  # lazy: schema and decoders load on first use (CLI start-up)

        _layers_module = ledger.typed.layers
    return _layers_module

__all__ = ["LedgerConfigStore", "MemoryConfigStore", "SqliteConfigStore"]

T = TypeVar("T")

class LedgerConfigStore(ConfigStore):
    """A `ConfigStore` on the event-sourced ledger (any backend)."""

    # writes go through the database's writer thread (False: `run_write`, see the
    # module docstring)
    dedicated_writer = True

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._writer: Writer | None = None
        self._forget: weakref.finalize[Any, Any] | None = None  # releases it on GC
        self._writer_lock = threading.Lock()
        self._closed = False
        self.backend_name = ledger.backend.name
        # set by open_store(): the files this ledger was imported from
        self.config_file: Path | None = None
        self.keys_file: Path | None = None
        # set by open_store(): imports a hand edit of the config file (used by watch)
        self.file_sync: Callable[[], None] | None = None
        self._providers: LedgerProviderStore | None = None
        self._eff_key: tuple[Any, ...] | None = None
        self._eff_state: ConfigState | None = None
        self._eff: Effective | None = None
        self._eff_bytes = b""
        self._eff_unopened = 0  # free-form secrets load_effective could not open
        # _eff_bytes as MessagePack, and the JSON it was made from (b"": kept as JSON)
        self._eff_pack: tuple[bytes, bytes] | None = None
        self._vars_state: ConfigState | None = None
        self._vars: tuple[tuple[str, ...], tuple[bytes, ...]] = ((), ())  # names, fs-encoded
        self._meta_cache: dict[int, Event | None] = {}

    @property
    def providers(self) -> LedgerProviderStore:
        """Provider credentials in this ledger (reading a not-yet-imported
        provider_keys.json as a fallback when opened by open_store)."""
        if self._providers is None:
            # lazy: loaded only on this path (CLI start-up)
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
        copied: Doc = copy_value(state.config)  # the caller's own, at every depth
        return copied

    def effective_layers(self, flags: Flags, env: Mapping[str, str] | None) -> Effective:
        layers = _layers()
        state = self.ledger.head_state()
        if self._vars_state is not state:
            names = tuple(layers.referenced_variables(state.config))
            self._vars, self._vars_state = (names, tuple(map(os.fsencode, names))), state
        key = (state.seq, flags.key(), layers.environment_key(env, *self._vars))
        if self._eff is None or self._eff_state is not state or key != self._eff_key:
            self._eff = layers.wired(layers.effective_config(
                state.config, env=env, flags=flags, opener=self.ledger.vault,
                where=f"ledger seq {state.seq}"), self._wiring())
            # what load_effective hands out: free-form secrets opened once per
            # effective state (not per call), kept as this process's plain copy
            from ledger.typed.freeform import reveal_counting

            codec = self.ledger.codec
            plain, self._eff_unopened = reveal_counting(
                codec.decoder.decode(codec.encoder.encode(self._eff.config)))
            self._eff_bytes = codec.encoder.encode(plain)
            self._eff_key, self._eff_state = key, state
            self._eff_pack = None
        return self._eff

    async def load_effective(self, *, flags: Flags = NO_FLAGS,
                             env: Mapping[str, str] | None = None) -> MoltisConfig:
        """What the gateway runs with: plain values, free-form channel secrets included
        (displays use `effective_at`, which keeps them `Secret`s)."""
        self.effective_layers(flags, env)
        codec = self.ledger.codec
        data = self._eff_bytes
        if self._eff_unopened:
            # a token that could not be opened (shredded, no key) is revived as a masked
            # Secret
            revived: MoltisConfig = codec.decoder.decode(data)
            return revived
        # otherwise the bytes hold no reference in free-form maps: no walk; from the
        # second read on, the same config is decoded from MessagePack (tied to the JSON
        # it was made from: a thread that rebuilt the effective state meanwhile has
        # other bytes). Each read is a fresh decode: nothing a caller changes is shared.
        pack = self._eff_pack
        if pack is not None and pack[0] is data and pack[1]:
            packed: MoltisConfig = codec.pack_decoder.decode(pack[1])
            return packed
        config: MoltisConfig = codec.decoder.decode_plain(data)
        if pack is None or pack[0] is not data:
            self._eff_pack = (data, _packed(codec, config, data))
        return config

    async def load_effective_at(self, ref: Ref, *, flags: Flags = NO_FLAGS,
                                env: Mapping[str, str] | None = None) -> MoltisConfig:
        """The effective config as it was at REF (the stored document then, with
        today's defaults, environment and flags)."""
        seq = self.resolve_ref(ref)
        if seq == self.ledger.head_state().seq:
            return await self.load_effective(flags=flags, env=env)
        state = self.ledger.state_at(seq)
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.typed.freeform import reveal

        layers = _layers()
        config: MoltisConfig = reveal(layers.wired(layers.effective_config(
            state.config, env=env, flags=flags, opener=self.ledger.vault,
            where=f"ledger seq {seq}"), self._wiring()).config)
        return config

    def effective_at(self, ref: Ref | None = None, *, flags: Flags = NO_FLAGS,
                     env: Mapping[str, str] | None = None) -> tuple[Effective, Doc]:
        """The layers of the effective config at REF (default: the head) and the stored
        document they came from, for displays: secrets stay `Secret`s (never revealed,
        unlike `load_effective`), and `Effective.sealed` names the values `${VAR}` took
        from a sealed `[env]` entry. Do not change what it returns (it may be cached)."""
        head = self.ledger.head_state()
        seq = head.seq if ref is None else self.resolve_ref(ref)
        if seq == head.seq:
            return self.effective_layers(flags, env), head.config
        state = self.ledger.state_at(seq)
        layers = _layers()
        eff: Effective = layers.wired(layers.effective_config(
            state.config, env=env, flags=flags, opener=self.ledger.vault,
            where=f"ledger seq {seq}"), self._wiring())
        return eff, state.config

    def _wiring(self) -> dict[str, Any] | None:
        """This store's `[config]`: where the gateway reading it runs (see
        `ledger.typed.layers.wired`); None for a store that is not a place Moltis's
        config can name (the memory store)."""
        backend = self.ledger.backend
        if self.backend_name == "sqlite":
            location: str | None = str(backend.location)
        elif self.backend_name == "postgres":
            location = getattr(backend, "dsn", None)
        else:
            return None
        ledger_id = self.ledger.vault.ledger_id  # loaded once (reloaded by a fork)
        return wiring_table(backend=self.backend_name, location=location,
                            ledger_id=ledger_id.decode() if ledger_id else None)

    async def source_metadata(self, *, flags: Flags = NO_FLAGS,
                              env: Mapping[str, str] | None = None) -> dict[str, Provenance]:
        eff = self.effective_layers(flags, env)
        state = self.ledger.head_state()
        prov_tree = state.prov_config

        def origin(path: KeyPath) -> Provenance | None:
            seq = get_value(prov_tree, path)
            if not isinstance(seq, int):
                return None
            return self._ledger_provenance(seq)

        result: dict[str, Provenance] = _layers().provenance_map(eff, state.config, origin)
        return result

    def _ledger_provenance(self, seq: int) -> Provenance:
        if seq not in self._meta_cache:
            if len(self._meta_cache) > 4096:
                self._meta_cache.clear()
            self._meta_cache[seq] = self.ledger.event(seq)
        ev = self._meta_cache[seq]
        make = _layers().Provenance
        prov: Provenance
        if ev is None:
            prov = make("ledger", f"seq {seq}", seq=seq)
        else:
            prov = make(
                "ledger", f"seq {seq} by {ev.actor} at {ev.time.isoformat(timespec='seconds')}",
                seq=seq, actor=ev.actor, time=ev.time.isoformat(), reason=ev.reason or None,
            )
        return prov

    async def head_seq(self) -> int:
        return self.ledger.head_state().seq

    # -- writes ----------------------------------------------------------------------

    async def run_write(self, call: Callable[[bool], T]) -> T:
        """Run the blocking write `call(wait)` off the loop (see the module docstring)."""
        database = self.ledger.commit_group
        if not self.dedicated_writer or database is None:
            return await run_write(call)
        writer = self._writer
        if writer is None:
            with self._writer_lock:
                if self._closed:
                    raise InputError("this store is closed; open it again to write")
                if self._writer is None:
                    # lazy: asyncio and the writer load on the first write (CLI start-up)
                    from ledger.stores.writer import release_collected, writer_for

                    self._writer = writer_for(database)
                    self._forget = weakref.finalize(self, release_collected, self._writer)
                writer = self._writer
        return await writer.run(call, self)

    async def save_raw(self, cfg: MoltisConfig | Mapping[str, Any], *, actor: str | None = None,
                       reason: str | None = None, source: str = "api",
                       expected_seq: int | None = None) -> Commit:
        kw: dict[str, Any] = {"actor": actor, "reason": reason, "source": source,
                              "expected_seq": expected_seq}
        # lazy: schema and decoders load on first use (CLI start-up)
        from ledger.schema import MoltisConfig

        if isinstance(cfg, MoltisConfig):
            return await self.run_write(lambda wait: self.ledger.save_typed(cfg, wait=wait, **kw))
        doc = normalize_document(cfg, "save_raw document")
        return await self.run_write(
            lambda wait: self.ledger.save_documents(doc, where="save_raw", wait=wait, **kw))

    async def apply_changes(self, raw_changes: Sequence[RawChange], *,
                            actor: str | None = None, reason: str | None = None,
                            source: str = "api", expected_seq: int | None = None) -> Commit:
        return await self.run_write(lambda wait: self.ledger.apply_raw(
            raw_changes, actor=actor, reason=reason, source=source,
            expected_seq=expected_seq, wait=wait))

    async def update_raw(self, fn: Callable[[MoltisConfig], Any], *, actor: str | None = None,
                         reason: str | None = None, source: str = "api",
                         expected_seq: int | None = None) -> Commit:
        fn = _in_this_context(fn)
        return await self.run_write(lambda wait: self.ledger.update_typed(
            fn, actor=actor, reason=reason, source=source, expected_seq=expected_seq,
            wait=wait))

    # -- history ---------------------------------------------------------------------

    def resolve_ref(self, ref: Ref) -> int:
        return resolve_ref(self.ledger, ref)

    async def history(self, *, path: str | KeyPath | None = None, actor: str | None = None,
                      since: Ref | None = None, until: Ref | None = None,
                      limit: int | None = None) -> list[Event]:
        """Events newest first, filtered by path prefix, actor and time/seq range."""
        return list(iter_history(self.ledger, path=path, actor=actor, since=since,
                                 until=until, limit=limit))

    async def verify(self, expect_head: bytes | None = None) -> VerifyReport:
        return self.ledger.verify(expect_head)

    def signing_key_fingerprint(self) -> str | None:
        """The fingerprint of the key that signs this ledger's head (derived from the
        ledger key; `verify --expect-key` pins it), or None without the ledger key."""
        keys = self.ledger.vault.integrity()
        return keys.fingerprint if keys is not None else None

    async def watch(self, poll_interval: float = 0.2,
                    after: int | None = None) -> AsyncIterator[Event]:
        """New events as they are appended (by any process), in order, forever."""
        import asyncio
        last = self.ledger.head_state().seq if after is None else after
        while True:
            if self.file_sync is not None:
                self.file_sync()  # a hand edit of moltis.toml becomes an event here
            state = self.ledger.head_state()
            if state.seq > last:
                for ev in self.ledger.events(after=last, until=state.seq):
                    last = ev.seq
                    yield ev
            await asyncio.sleep(poll_interval)

    async def close(self) -> None:
        """Let the writer thread finish the writes already queued (this blocks the loop
        for at most those commits), then close the ledger."""
        with self._writer_lock:
            self._closed = True
            writer, self._writer = self._writer, None
            forget, self._forget = self._forget, None
        if forget is not None:
            forget.detach()
        if writer is not None:
            writer.drain(self)  # other stores may keep the thread: wait for ours
            # lazy: loaded already when there is a writer (it was imported to make it)
            from ledger.stores.writer import release

            release(writer)
        self.ledger.close()


def _in_this_context(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`fn` run in a copy of the calling task's context: the writer thread calls it
    while leading a group, outside the context the write was queued in."""
    context = contextvars.copy_context()
    return lambda cfg: context.run(fn, cfg)


def _packed(codec: TypedCodec, config: MoltisConfig, data: bytes) -> bytes:
    """`config` (decoded from `data`, JSON) as MessagePack, if that decodes to the same
    config (its JSON is `data` again); else b"": the reads stay on the JSON."""
    pack = codec.pack_encoder.encode(config)
    return pack if codec.encoder.encode(codec.pack_decoder.decode(pack)) == data else b""


class SqliteConfigStore(LedgerConfigStore):
    """The ledger in a SQLite file (WAL, synchronous=FULL by default)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL",
                 busy_timeout: float = 5.0, read_only: bool = False,
                 keys: KeySource | None = None, immutable: bool = False) -> None:
        backend = SqliteBackend(path, synchronous=synchronous, busy_timeout=busy_timeout,
                                read_only=read_only, immutable=immutable)
        super().__init__(Ledger(backend, keys=keys))
        self.path = backend.path


class MemoryConfigStore(LedgerConfigStore):
    """The ledger in memory: the reference backend, for tests and throwaway use."""

    def __init__(self, *, keys: KeySource | None = None,
                 backend: Backend | None = None) -> None:
        from ledger.backends.memory import MemoryBackend  # not on the SQLite path (start-up)

        super().__init__(Ledger(backend or MemoryBackend(), keys=keys))

