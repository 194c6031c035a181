"""Size-independent edits (issue 16): `update_raw`'s fn gets a copy whose parts are
copied on first read (`ledger.typed.edit_copy`), and only the parts it read are compared.
Checked structurally (which sections were decoded), never by time; and the copy stays
private: nothing a caller does to it, during or after the write, reaches the ledger's
own view or another caller."""

from __future__ import annotations

from typing import Any

import msgspec

from ledger import MemoryConfigStore, MoltisConfig, SqliteConfigStore
from tests.conftest import run

DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600},
       "providers": {"openai": {"models": ["gpt-a", "gpt-b"]}}}


def store_with_doc() -> MemoryConfigStore:
    store = MemoryConfigStore()
    run(store.save_raw(DOC, actor="setup"))
    return store


def test_only_what_fn_reads_is_copied_and_compared():
    store = store_with_doc()
    seen: list[Any] = []

    def fn(cfg: Any) -> None:
        seen.append(cfg)
        cfg.tools.agent_timeout_secs = 601

    run(store.load_raw())
    before = store.ledger._view
    assert before is not None
    old = before.pristine
    commit = run(store.update_raw(fn, actor="me"))
    assert [c.path for c in commit.changes] == [("tools", "agent_timeout_secs")]
    view = store.ledger._view
    assert view is not None
    copy, pristine = seen[0], view.pristine
    fields = MoltisConfig.__struct_fields__

    def own(a: Any, b: Any, names: tuple[str, ...]) -> list[str]:
        return [n for n, x, y in zip(names, msgspec.structs.astuple(a),
                                     msgspec.structs.astuple(b), strict=True) if x is not y]

    # the next view shares every untouched part with the view before: nothing of them
    # was encoded or decoded; in `tools`, only the leaf fn set is its own
    assert own(pristine, old, fields) == ["tools"]
    assert own(pristine.tools, old.tools,
               type(old.tools).__struct_fields__) == ["agent_timeout_secs"]
    # the copy fn got holds a shallow twin of each section (so C-level readers of the
    # root never reach the view's instances: review r6 F5), whose slots are the view's
    sections = msgspec.structs.astuple(copy)
    assert not [n for n, x, y in zip(fields, sections, msgspec.structs.astuple(old),
                                     strict=True) if x is y and isinstance(y, msgspec.Struct)]
    server = sections[fields.index("server")]
    assert own(server, old.server, type(old.server).__struct_fields__) == []


def test_a_writes_next_view_prepares_only_the_sections_it_replaced():
    """The per-view work of the copy (a template per section) is taken over from the
    view before for every section a write did not replace: a run of writes prepares
    what each one changed, not the whole config each time."""
    store = store_with_doc()
    run(store.update_raw(lambda c: setattr(c.server, "port", 1), actor="me"))
    first = store.ledger._view  # the view the next write edits
    run(store.update_raw(lambda c: setattr(c.tools, "agent_timeout_secs", 2), actor="me"))
    second = store.ledger._view
    run(store.update_raw(lambda c: setattr(c.server, "port", 3), actor="me"))
    assert first is not None and first._plan is not None
    assert second is not None and second._plan is not None
    plan = second._plan
    assert second._prior_plan is None  # the prior is let go once used
    fields = MoltisConfig.__struct_fields__
    rebuilt = [name for name, old, new in zip(fields, first._plan.entries, plan.entries,
                                              strict=True) if old is not new]
    assert rebuilt == ["tools"]
    assert run(store.load_raw()).server.port == 3


def test_the_copy_never_exposes_the_views_own_instances():
    store = store_with_doc()
    kept: list[Any] = []

    def fn(cfg: Any) -> None:
        kept.append(cfg)
        cfg.server.port = 8080

    run(store.update_raw(fn, actor="me"))
    copy = kept[0]
    # after the write the caller still has its copy; reading an untouched section
    # gives it a private instance, so changing it changes nothing else
    copy.providers.entries["openai"].models.append("injected")
    copy.tools.agent_timeout_secs = 1
    copy.server.port = 1
    fresh = run(store.load_raw())
    assert fresh.providers.entries["openai"].models == ["gpt-a", "gpt-b"]
    assert (fresh.tools.agent_timeout_secs, fresh.server.port) == (600, 8080)
    # the next writer sees the ledger's values, and records only its own change
    commit = run(store.update_raw(lambda c: setattr(c.identity, "name", "Atlas"),
                                  actor="next"))
    assert [c.path for c in commit.changes] == [("identity", "name")]
    assert store.ledger.replay() == store.ledger.head_state()


def test_the_copy_encodes_and_compares_like_the_config_it_is():
    store = store_with_doc()
    before = run(store.load_raw())
    out: dict[str, Any] = {}

    def fn(cfg: Any) -> None:
        out["json"] = msgspec.json.encode(cfg)  # untouched sections, without decoding
        out["isinstance"] = isinstance(cfg, MoltisConfig)
        out["tuple"] = msgspec.structs.astuple(cfg) == msgspec.structs.astuple(before)
        cfg.server.port = 9000

    run(store.update_raw(fn, actor="me"))
    assert out["isinstance"] and out["tuple"]
    assert out["json"] == msgspec.json.encode(before)


def test_fn_may_return_another_config(tmp_path):
    store = SqliteConfigStore(tmp_path / "r.db")
    run(store.save_raw(DOC, actor="setup"))

    def fn(cfg: Any) -> MoltisConfig:
        return msgspec.structs.replace(cfg, server=msgspec.structs.replace(cfg.server,
                                                                          port=7000))

    commit = run(store.update_raw(fn, actor="me"))
    assert [c.path for c in commit.changes] == [("server", "port")]
    assert run(store.load_raw()).server.port == 7000
    assert store.ledger.verify().ok


def test_an_invalid_edit_in_a_touched_section_is_named_and_writes_nothing():
    import pytest

    from ledger import ConfigValidationError

    store = store_with_doc()
    with pytest.raises(ConfigValidationError, match=r"server\.port"):
        run(store.update_raw(lambda c: setattr(c.server, "port", "high"), actor="me"))
    assert store.ledger.head_state().seq == 1
    assert run(store.load_raw()).server.port == 13131


def test_fn_may_return_anything_else_after_editing_in_place():
    store = store_with_doc()
    commit = run(store.update_raw(
        lambda c: (setattr(c.server, "port", 8443), setattr(c.tools, "agent_timeout_secs", 5)),
        actor="me"))
    assert sorted(c.path for c in commit.changes) == [("server", "port"),
                                                      ("tools", "agent_timeout_secs")]
    cfg = run(store.load_raw())
    assert (cfg.server.port, cfg.tools.agent_timeout_secs) == (8443, 5)
