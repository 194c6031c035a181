"""Moltis's loader entry points, kept for hosts that called them (the seed's "keep
current external APIs intact"): thin synchronous functions over the selected store.

    cfg = discover_and_load()                 # effective config (defaults, file/ledger, env)
    save_config(cfg, reason="onboarding")     # record what differs
    update_config(lambda c: setattr(c.server, "port", 8080), reason="...")

They open the store with `open_store()` once per (config dir, data dir) and reuse it.
Inside a running event loop use the async store API instead (these would block it).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ledger.engine.ledger import Commit
from ledger.errors import LedgerError
from ledger.ops.open_store import open_store
from ledger.schema import MoltisConfig
from ledger.stores.contract import ConfigStore
from ledger.typed.layers import NO_FLAGS, Flags

__all__ = ["discover_and_load", "save_config", "update_config"]

T = TypeVar("T")
_stores: dict[tuple[str | None, str | None], ConfigStore] = {}
_lock = threading.Lock()


def _store(config_dir: str | os.PathLike[str] | None,
           data_dir: str | os.PathLike[str] | None) -> ConfigStore:
    key = (os.fspath(config_dir) if config_dir else None,
           os.fspath(data_dir) if data_dir else None)
    with _lock:
        if key not in _stores:
            _stores[key] = open_store(config_dir=config_dir, data_dir=data_dir)
        return _stores[key]


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise LedgerError("called from a running event loop: use the async store API "
                      "(open_store() and await store.load_effective())")


def discover_and_load(config_dir: str | os.PathLike[str] | None = None,
                      data_dir: str | os.PathLike[str] | None = None,
                      flags: Flags = NO_FLAGS) -> MoltisConfig:
    """The effective config: defaults, the stored config, MOLTIS_* and the flags."""
    return _sync(_store(config_dir, data_dir).load_effective(flags=flags))


def save_config(cfg: MoltisConfig, *, config_dir: str | os.PathLike[str] | None = None,
                data_dir: str | os.PathLike[str] | None = None, actor: str | None = None,
                reason: str | None = None, flags: Flags = NO_FLAGS) -> Commit:
    """Store a config obtained from `discover_and_load()`: only what the caller changed
    is recorded, so environment overrides and ${VAR} values stay out of the store."""
    return _sync(_store(config_dir, data_dir).save_effective(cfg, flags=flags, actor=actor,
                                                             reason=reason))


def update_config(fn: Callable[[MoltisConfig], Any], *,
                  config_dir: str | os.PathLike[str] | None = None,
                  data_dir: str | os.PathLike[str] | None = None, actor: str | None = None,
                  reason: str | None = None) -> Commit:
    """Read-modify-write of the stored config under the store's lock.

    Unlike Moltis's `update_config`, `fn` sees the stored config (not the effective
    one), so environment overrides and ${VAR} values are never written back."""
    return _sync(_store(config_dir, data_dir).update_raw(fn, actor=actor, reason=reason))


def forget_stores() -> None:
    """Close cached stores (tests, or a host that changes directories at runtime)."""
    with _lock:
        for store in _stores.values():
            _sync(store.close())
        _stores.clear()
