"""Where `switch-backend sqlite|postgres` takes the configuration from and which ledger
it makes the gateway's, each refused before anything is written when it cannot be
right: the files, or the other ledger the gateway runs on (reviews r13, r14)."""

from __future__ import annotations

import asyncio
import os
from typing import Any, NamedTuple

import click

from ledger.backends.open import is_dsn, same_location
from ledger.cli.base import CommandError, State
from ledger.errors import LedgerError
from ledger.files import dirs

__all__ = ["switch_source", "switch_target"]


def switch_target(state: State, target: str) -> tuple[str, str]:
    """The ledger a switch to `target` makes the gateway's: (backend, location), or a
    refusal before anything is written."""
    given = state.db is not None
    if target == "postgres" and not (state.db or os.environ.get("MOLTIS_CONFIG_DSN")):
        try:
            name, _ = state.gateway()
        except LedgerError:
            name = "?"
        if name != "postgres":
            raise click.UsageError("switch-backend postgres needs the DSN: --db "
                                   "postgresql://... or MOLTIS_CONFIG_DSN")
    named_db = os.environ.get("MOLTIS_CONFIG_DB")
    if target == "sqlite" and state.db is None and named_db and not is_dsn(named_db):
        state.db = named_db  # the sqlite ledger the environment names (review r29)
    if target == "sqlite" and state.db is None and not named_db:
        try:
            on_sqlite = state.gateway()[0] == "sqlite"
        except LedgerError:
            on_sqlite = True
        if not on_sqlite:  # back from PostgreSQL: the default ledger (docs/cli.md)
            state.db = str(dirs.default_db_path(state.data_home))
    backend, location = state.location()
    if backend != target:
        named = "--db" if given else ("MOLTIS_CONFIG_DB" if named_db else "the configuration")
        raise click.UsageError(f"{named} names a {backend} ledger, not {target}")
    forced = os.environ.get("MOLTIS_CONFIG_BACKEND")
    if forced and forced != target:
        # the gateway would not open the ledger after the switch: refused before
        # anything is written (review r14: found out only after both were written)
        raise CommandError(f"MOLTIS_CONFIG_BACKEND={forced} overrides [config] backend: "
                           f"after the switch the gateway would still open the {forced} "
                           "store; nothing was changed. Unset it (or set it to "
                           f"{target}) and run the switch again", 1)
    _refuse_other_location(state, target, location)
    return backend, location


def _refuse_other_location(state: State, target: str, location: str) -> None:
    """Refused when the gateway would not open `location` once `[config]` names it: the
    environment (MOLTIS_CONFIG_DSN, MOLTIS_CONFIG_DB) overrides `[config]`, so it would
    stay where that names (review r28: the switch said "proven" and exited 0, and every
    later write went to the other ledger). Asked of `select_backend` itself, the rule
    the gateway follows; a SQLite file is the same however its path is spelled (a
    symlinked data dir: review r29)."""
    from ledger.ops.installation import describe_location, select_backend

    key = "dsn" if target == "postgres" else "db"
    _, picked = select_backend(config_file=state.config_file, data_dir=state.data_home,
                               env=os.environ, section=lambda: {"backend": target,
                                                                key: location})
    if picked is None or same_location(picked, location):
        return
    raise CommandError(f"MOLTIS_CONFIG_DSN / MOLTIS_CONFIG_DB names another ledger "
                       f"({describe_location(picked)}), which overrides [config]: after the "
                       "switch the gateway would still open it; nothing was changed. Unset "
                       f"it (or point it at {describe_location(location)}) and run the "
                       "switch again", 1)


class _Source(NamedTuple):
    """Where the gateway's configuration is before a switch to a ledger, and what the
    ledger is made equal to."""

    store: Any  # the store the gateway opens now (what the switch is proven against)
    providers: Any
    ledger: bool  # another ledger (its head is carried), not the files
    documents: dict[str, Any]
    config_data: bytes | None
    what: str


def switch_source(state: State, target: str, location: str) -> _Source | None:
    """The files, or, when the gateway runs on another ledger, that ledger's head with
    its secret values: `migrate` masked the files' secrets and retired provider_keys.json
    there, so the files no longer hold the configuration (review r13: the switch made
    the new ledger equal to the masks and to no keys, and called it proven). None when
    the gateway already runs on the target ledger: nothing to switch (review r16: the
    ledger was made equal to the files, reverting every change made in it since)."""
    from ledger.ops.installation import describe_location
    from ledger.ops.open_store import open_store
    from ledger.ops.switch import head_documents
    from ledger.stores.file_providers import FileProviderStore
    from ledger.stores.file_store import FileConfigStore
    from ledger.stores.ledger_store import LedgerConfigStore

    now: Any = open_store(config_dir=state.config_home, data_dir=state.data_home)
    if isinstance(now, LedgerConfigStore) and _same_ledger(now, location):
        asyncio.run(now.close())
        return None
    if isinstance(now, LedgerConfigStore):
        config, keys = head_documents(now.ledger, f"the {target} ledger")
        return _Source(now, now.providers, True, {"config": config, "keys": keys}, None,
                       f"the {now.backend_name} ledger's head")
    asyncio.run(now.close())
    name, where = state.gateway()
    if name in ("sqlite", "postgres"):  # and `now` is not a ledger store (see above)
        # the gateway's ledger cannot be opened (it is served by its head mirror, or
        # read-only): its configuration is there, not in the files migrate masked
        # (review r14: the switch then carried the masks and no keys)
        reason = getattr(now, "read_only_reason", None) or "see the log"
        raise CommandError(
            f"the gateway's {name} ledger ({describe_location(where or '')}) cannot be "
            f"opened ({reason}); its configuration is there, not in the files, so "
            "nothing was switched. Repair or restore that ledger first (`moltis-ledger "
            "verify`, `moltis-ledger restore FILE`)", 1)
    files = FileConfigStore(state.config_file, read_only=True)
    return _Source(files, FileProviderStore(state.keys_file, config_store=files,
                                            read_only=True),
                   False, {"config": state.installation.doc}, state.installation.data,
                   "the files")


def _same_ledger(store: Any, location: str) -> bool:
    """Whether `store` (a ledger store) is the ledger at `location` (a SQLite path or a
    DSN, as `State.location` gives it)."""
    backend = store.ledger.backend
    if store.backend_name == "sqlite":
        return same_location(str(backend.location), location)
    # the DSN as given: `location` is the backend's without its password (and schema)
    return getattr(backend, "dsn", None) == location
