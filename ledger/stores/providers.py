"""Provider credentials: the `ProviderStore` contract and its ledger implementation.

Same pattern as `ConfigStore`: async, list/get/set/remove, `actor=`/`reason=` on
writes, history and past reads on the ledger. Keys live in the ledger's `keys`
document (what `provider_keys.json` holds), sealed like every secret. Saving a key also
marks `providers.<name>.enabled = true` in the config, as Moltis does, but here both
changes are one event instead of two unrelated file writes.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from ledger.core.document import MISSING, get_value
from ledger.core.events import Change, Event
from ledger.core.secret_refs import Secret
from ledger.engine.ledger import Commit
from ledger.engine.queries import Ref, iter_history
from ledger.schema.provider_keys import is_key_secret_path
from ledger.schema.providers import is_provider_name
from ledger.stores.contract import UNSET, ProviderStore, check_name, entry_changes
from ledger.stores.key_file import META_KEYS, read_keys_file
from ledger.typed.changes import Sealer, materialize
from ledger.typed.layers import NO_FLAGS, Flags
from projections.config_view import ConfigState
from projections.provider_view import (
    EffectiveProvider,
    ProviderKey,
    effective_providers,
    keys_view,
    normalize_keys_document,
)

if TYPE_CHECKING:
    from ledger.stores.ledger_store import LedgerConfigStore

__all__ = ["LedgerProviderStore"]


class LedgerProviderStore(ProviderStore):
    """Provider credentials in the ledger, with the read fallback to a not-yet-imported
    provider_keys.json for one release window (the seed's "file read fallback")."""

    def __init__(self, config_store: LedgerConfigStore,
                 fallback_file: str | os.PathLike[str] | None = None) -> None:
        self._config = config_store
        self.ledger = config_store.ledger
        self.backend_name = self.ledger.backend.name
        self.fallback_file = FsPath(fallback_file) if fallback_file is not None else None
        self._fallback_cache: tuple[tuple[int, int, int], dict[str, ProviderKey]] | None = None
        self._ever: tuple[int, set[str]] | None = None

    # -- reads -----------------------------------------------------------------------

    async def list(self) -> dict[str, ProviderKey]:
        return keys_view(self.ledger.head_state().keys, self.ledger.vault)

    async def list_at(self, ref: Ref) -> dict[str, ProviderKey]:
        seq = self._config.resolve_ref(ref)
        return keys_view(self.ledger.state_at(seq).keys, self.ledger.vault)

    def fallback_entries(self) -> dict[str, ProviderKey]:
        """Entries of provider_keys.json that the ledger does not hold (yet)."""
        path = self.fallback_file
        if path is None:
            return {}
        try:
            st = path.stat()
        except OSError:
            return {}
        if self.ledger.backend.get_meta(META_KEYS) is not None:
            # imported: the ledger is the key store now, and what it removed stays
            # removed (a tombstone is never undone by the old file)
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._fallback_cache is None or self._fallback_cache[0] != key:
            self._fallback_cache = (key, keys_view(read_keys_file(path)))
        ever = self._names_ever_held()
        return {n: e for n, e in self._fallback_cache[1].items() if n not in ever}

    def _names_ever_held(self) -> set[str]:
        """Every provider the ledger's key store ever held, removed ones included."""
        seq = self.ledger.head_state().seq
        if self._ever is None or self._ever[0] != seq:
            names = {ch.path[0] for ev in self.ledger.events() for ch in ev.changes
                     if ch.doc == "keys" and ch.path}
            self._ever = (seq, names)
        return self._ever[1]

    async def effective(self, *, env: Mapping[str, str] | None = None,
                        flags: Flags = NO_FLAGS) -> dict[str, EffectiveProvider]:
        env = os.environ if env is None else env
        eff = self._config.effective_layers(flags, env)
        meta_env = {(p[1], p[2]): f"env:{var}" for p, var in eff.env_paths.items()
                    if len(p) == 3 and p[0] == "providers"}
        return effective_providers(
            eff.config.providers.entries, await self.list(), env,
            fallback=self.fallback_entries(), config_sources=meta_env,
        )

    async def history(self, name: str | None = None, *,
                      limit: int | None = None) -> builtins.list[Event]:
        return list(iter_history(self.ledger, path=(name,) if name else (), limit=limit,
                                 doc="keys"))

    # -- writes ----------------------------------------------------------------------

    async def set(self, name: str, *, api_key: str | Secret | None = UNSET,
                  base_url: str | Secret | None = UNSET, models: builtins.list[str] | None = UNSET,
                  display_name: str | None = UNSET, enable: bool = True,
                  actor: str | None = None, reason: str | None = None, source: str = "api",
                  expected_seq: int | None = None) -> Commit:
        raw = entry_changes(check_name(name), {"api_key": api_key, "base_url": base_url,
                                               "models": models, "display_name": display_name})

        def changes_for(state: ConfigState, sealer: Sealer) -> list[Change]:
            changes = materialize(raw, state.keys, sealer, where=f"provider {name}", doc="keys",
                                  secret=is_key_secret_path)
            if get_value(state.keys, (name,)) is MISSING and not changes:
                changes.append(Change(op="set", path=(name,), value={}, doc="keys"))
            if changes and enable and is_provider_name(name) and get_value(
                    state.config, ("providers", name, "enabled")) is not True:
                changes.append(Change(op="set", path=("providers", name, "enabled"), value=True))
            return changes

        return await self._config.run_write(lambda wait: self.ledger.apply(
            changes_for, actor=actor, reason=reason, source=source, expected_seq=expected_seq,
            wait=wait))

    async def remove(self, name: str, *, actor: str | None = None, reason: str | None = None,
                     source: str = "api", expected_seq: int | None = None) -> Commit:
        def changes_for(state: ConfigState, _sealer: Sealer) -> list[Change]:
            if get_value(state.keys, (name,)) is MISSING:
                return []
            return [Change(op="unset", path=(name,), doc="keys")]

        return await self._config.run_write(lambda wait: self.ledger.apply(
            changes_for, actor=actor, reason=reason, source=source, expected_seq=expected_seq,
            wait=wait))

    async def import_keys(self, data: Mapping[str, Any], *, actor: str | None = None,
                          reason: str | None = None, source: str = "import") -> Commit:
        doc = normalize_keys_document(data, "provider keys")
        return await self._config.run_write(lambda wait: self.ledger.save_documents(
            keys=doc, where="provider keys", actor=actor, reason=reason, source=source,
            wait=wait))


def describe_entry(entry: ProviderKey) -> dict[str, Any]:
    """A JSON-safe, redacted description of one entry (for output and logs)."""
    out: dict[str, Any] = {"name": entry.name}
    if entry.api_key is not None:
        out["apiKey"] = entry.api_key.masked()
    if entry.base_url is not None:
        out["baseUrl"] = entry.base_url.masked() if isinstance(entry.base_url, Secret) else (
            entry.base_url)
    if entry.models:
        out["models"] = list(entry.models)
    if entry.display_name:
        out["displayName"] = entry.display_name
    out.update(entry.extra)
    return out

