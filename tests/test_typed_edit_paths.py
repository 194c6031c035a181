"""The typed edit's fast path (`ledger.typed.edit_copy`: copy on read, walk only what
changed, validate only the changed values, patch the view) against the whole-section
path it replaces (`TypedView._edit_sections` on a fully decoded private copy), on
random edits of the docs corpus (tests/fixtures/moltis): the same raw changes, the same
problem or error text, the same next typed view; and at the ledger, the view an
accepted edit leaves is the whole-document conversion of the new raw document.
"""

from __future__ import annotations

import functools
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import ConfigValidationError, MemoryConfigStore
from ledger.core.document import normalize_value
from ledger.core.secret_refs import Secret
from ledger.schema.introspect import ROOT, TypeNode, section_info, strip_annotated
from ledger.typed.convert import to_typed
from ledger.typed.head_cache import TypedCodec, TypedView
from tests.conftest import run

FIXTURES = Path(__file__).parent / "fixtures" / "moltis"


# old key names beside current ones, and sealed secrets in typed and free-form places
OLD_NAMES = {
    "memory": {"embedding_provider": "openai", "embedding_model": "m-1",
               "embedding_api_key": "sk-mem", "model": "m-2"},
    "providers": {"openai": {"url": "https://a.example", "models": ["a"], "api_key": "sk-a"},
                  "custom-acme": {"url": "https://b.example", "base_url": "https://c.example"}},
    "channels": {"telegram": {"bot1": {"token": "tok-1", "allowlist": ["x"]},
                              "bot2": {"token": "tok-2"}}},
}


def _corpus() -> list[dict[str, Any]]:
    docs = [OLD_NAMES]
    for path in sorted([*FIXTURES.glob("*.toml"), *(FIXTURES / "upstream-docs").glob("*.toml")]):
        try:
            raw = tomllib.loads(path.read_text())
            to_typed(raw)
        except (tomllib.TOMLDecodeError, ConfigValidationError, UnicodeDecodeError):
            continue  # a snippet Moltis would refuse is no base for an edit
        docs.append(raw)
    return docs


CORPUS = _corpus()
CODEC = TypedCodec(None)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",),
                             exclude_characters="\x00"), max_size=8)


def test_the_corpus_is_the_docs() -> None:
    assert len(CORPUS) > 100  # the upstream docs' snippets, the example, the template


def _literals(node: TypeNode) -> list[Any]:
    tp = strip_annotated(node.annotation)
    out: list[Any] = []
    for arg in (typing.get_args(tp) if typing.get_origin(tp) is not typing.Literal else (tp,)):
        inner = strip_annotated(arg)
        if typing.get_origin(inner) is typing.Literal:
            out += typing.get_args(inner)
    return out


def value_for(node: TypeNode | None, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid and invalid at a position typed `node`."""
    anything = st.one_of(st.integers(-3, 70_000), text, st.booleans(), st.none(),
                         st.floats(-2, 2, allow_nan=False), st.lists(text, max_size=2),
                         st.sampled_from([b"bytes", ("a", "tuple"), 1.5, {"k": 1}, {1: "x"}]))
    if node is None or depth > 2:
        return anything
    choices: list[st.SearchStrategy[Any]] = [anything]
    if _literals(node):
        choices.append(st.sampled_from(_literals(node)))
    if node.kind == "secret":
        choices.append(text.map(Secret))
    if node.kind == "section" and node.cls is not None:
        choices.append(st.just(node.cls))  # a fresh default instance (built in fn)
    if node.kind == "dict":
        choices.append(st.dictionaries(text, value_for(node.item, depth + 1), max_size=2))
    if node.kind == "list":
        choices.append(st.lists(value_for(node.item, depth + 1), max_size=2))
    return st.one_of(*choices)


def _fresh(value: Any) -> Any:
    """A plan's value as fn sets it: new objects each time (fn runs on two copies)."""
    if isinstance(value, type):
        return value()
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, Secret):
        return Secret(value.reveal())
    return value


Step = tuple[tuple[Any, ...], str, Any]  # steps down (attr or key/index), action, value


def _set_in_doc(value: Any, fn: Any) -> bool:
    """Whether a field holds something other than its default (what a document set)."""
    if value is None:
        return False
    default = fn.factory() if fn.factory is not None else fn.default
    return not (type(value) is type(default) and value == default)


@st.composite
def plans(draw: st.DrawFn, cfg: Any) -> list[Step]:
    """Some edits of `cfg`, each found by walking down from the root (mostly through
    what the document sets: its secrets, old key names, free-form maps)."""
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 3))):
        obj, node, path = cfg, ROOT, ()
        for _depth in range(7):
            if isinstance(obj, msgspec.Struct):
                positions = section_info(type(obj)).positions
                present = [p for p in positions if _set_in_doc(getattr(obj, p[0].attr), p[0])]
                fn, _flat = draw(st.sampled_from(
                    present if present and draw(st.integers(0, 4)) else positions))
                child, child_node = getattr(obj, fn.attr), fn.node
                step: Any = fn.attr
            elif isinstance(obj, dict) and obj:
                step = draw(st.sampled_from(sorted(obj)))
                child, child_node = obj[step], node.item if node is not None else None
            elif isinstance(obj, list) and obj:
                step = draw(st.integers(0, len(obj) - 1))
                child, child_node = obj[step], node.item if node is not None else None
            else:
                break
            action = draw(st.sampled_from(["set", "descend", "descend", "descend", "read",
                                           "same"]))
            if action != "descend" or not isinstance(child, msgspec.Struct | dict | list):
                if action == "descend":
                    action = "set"
                steps.append(((*path, step), action, draw(value_for(child_node))))
                break
            obj, node, path = child, child_node, (*path, step)
        else:
            continue
        item = node.item if node is not None else None
        if isinstance(obj, dict) and draw(st.booleans()):
            steps.append((path, draw(st.sampled_from(["add", "delete"])),
                          (draw(text), draw(value_for(item)))))
        if isinstance(obj, list) and draw(st.booleans()):
            steps.append((path, "append", draw(value_for(item))))
    return steps


def _get(obj: Any, step: Any) -> Any:
    return getattr(obj, step) if isinstance(step, str) and isinstance(obj, msgspec.Struct) \
        else obj[step]


def apply_plan(cfg: Any, plan: list[Step], returns: bool) -> Any:
    for path, action, value in plan:
        parent = cfg
        for step in path[:-1]:
            parent = _get(parent, step)
        last = path[-1] if path else None
        target = _get(parent, last) if path else parent
        if action == "read":
            continue
        if action in ("set", "same"):
            # "same": a field set to what it holds
            new = _fresh(value) if action == "set" else target
            if isinstance(parent, msgspec.Struct):
                setattr(parent, last, new)
            else:
                parent[last] = new
        elif action == "add":
            target[value[0]] = _fresh(value[1])
        elif action == "delete":
            if target:
                del target[sorted(target)[0]]
        elif action == "append":
            target.append(_fresh(value))
    return msgspec.structs.replace(cfg) if returns else None


@functools.cache
def site(index: int) -> tuple[TypedView, dict[str, Any]]:
    """A ledger's head view of one corpus document (secrets sealed, as stored), and its
    raw document."""
    store = MemoryConfigStore()
    run(store.save_raw(CORPUS[index], actor="setup", source="import"))
    head = store.ledger.head_state()
    return store.ledger._view_for(head), head.config


def _norm(value: Any) -> Any:
    if isinstance(value, Secret):
        return ("secret", value.ref or value.reveal())
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    """A typed value, every field and type spelled out (an encoding omits a default
    only when it is the default's very object, which says nothing of the value)."""
    if isinstance(value, msgspec.Struct):
        return (type(value).__name__, {f: _typed(getattr(value, f))
                                       for f in value.__struct_fields__})
    if isinstance(value, dict):
        return ("dict", {k: _typed(v) for k, v in value.items()}, list(value))
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    if isinstance(value, Secret):
        return ("secret", value.ref or value.reveal())
    return (type(value).__name__, value)


def outcome(view: TypedView, edit: Any, raw: dict[str, Any]) -> Any:
    """What an edit decides: its raw changes, its problem, and the next typed view (its
    own instance, and a copy decoded from its sections)."""
    changes = [(c.op, c.path, _norm(c.value)) for c in edit.changes]
    try:  # the engine's next step (`materialize`) checks every value it stores
        for c in edit.changes:
            if c.op == "set":
                normalize_value(c.value, c.path, "update")
    except ConfigValidationError as err:  # refused: no next view is ever made
        return changes, edit.problem, str(err)
    after = view.after("next", edit)
    return changes, edit.problem, _typed(after.pristine), _typed(after.fresh())


def fast_and_whole(view: TypedView, raw: dict[str, Any], plan: list[Step],
                   returns: bool) -> tuple[Any, Any]:
    results = []
    for fast in (True, False):
        try:
            if fast:
                edit = view.edit(lambda c: apply_plan(c, plan, returns), raw)
            else:  # a fully decoded private copy, every section compared whole
                copy = view.fresh()
                returned = apply_plan(copy, plan, returns)
                edit = view._edit_sections(returned if returns else copy, raw)
            results.append(outcome(view, edit, raw))
        except (ConfigValidationError, KeyError, IndexError, TypeError, AttributeError) as err:
            results.append((type(err).__name__, str(err)))
    return results[0], results[1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_fast_path_decides_every_edit_as_the_whole_section_path(data: Any) -> None:
    view, raw = site(data.draw(st.integers(0, len(CORPUS) - 1), label="document"))
    plan = data.draw(plans(view.fresh()))
    returns = data.draw(st.integers(0, 9), label="fn returns a copy when 0") == 0
    fast, whole = fast_and_whole(view, raw, plan, returns)
    assert fast == whole


def test_an_edit_that_changes_nothing_writes_nothing_and_keeps_the_view() -> None:
    raw = {"server": {"port": 13131}, "providers": {"openai": {"models": ["a"]}}}
    view = CODEC.view_of_raw(raw, "head", "test")

    def fn(cfg: Any) -> None:
        cfg.providers["openai"].models.append("b")
        cfg.providers["openai"].models.pop()
        cfg.server.port = 13131
        cfg.tools.exec  # noqa: B018 (a read alone)

    edit = view.edit(fn, raw)
    assert (edit.changes, edit.replaced, edit.problem) == ([], {}, None)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_an_accepted_edit_leaves_the_view_of_the_new_raw_document(data: Any) -> None:
    raw = data.draw(st.sampled_from(CORPUS))
    plan = data.draw(plans(to_typed(raw)))
    store = MemoryConfigStore()
    run(store.save_raw(raw, actor="setup", source="import"))
    try:
        run(store.update_raw(lambda c: apply_plan(c, plan, False), actor="me"))
    except (ConfigValidationError, KeyError, IndexError, TypeError, AttributeError):
        return  # refused: the first property says it is refused as before
    ledger = store.ledger
    head = ledger.head_state()
    whole = to_typed(head.config, ledger.vault)
    assert _typed(ledger.typed()) == _typed(whole)
    assert _typed(ledger.view()) == _typed(whole)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_every_edit_of_a_run_is_decided_as_the_whole_section_path(data: Any) -> None:
    """A write's next view takes over its predecessor's per-view plan for the sections
    the write did not replace (`RootPlan(prior=...)`): at every step of a run of edits,
    the fast path still decides as the whole-section path does, and the view is the
    whole conversion of the raw document."""
    store = MemoryConfigStore()
    run(store.save_raw(data.draw(st.sampled_from(CORPUS)), actor="setup", source="import"))
    ledger = store.ledger
    for _ in range(3):
        head = ledger.head_state()
        view = ledger._view_for(head)
        plan = data.draw(plans(view.fresh()))
        fast, whole = fast_and_whole(view, head.config, plan, False)
        assert fast == whole
        try:
            run(store.update_raw(lambda c, plan=plan: apply_plan(c, plan, False), actor="me"))
        except (ConfigValidationError, KeyError, IndexError, TypeError, AttributeError):
            continue
        expected = _typed(to_typed(ledger.head_state().config, ledger.vault))
        assert _typed(ledger.view()) == expected


@pytest.mark.parametrize("returns", [False, True])
def test_a_provider_key_edit_on_the_large_config_is_decided_the_same(returns: bool) -> None:
    from benchmarks.largeconfig import large_config

    raw = large_config()
    name = next(k for k in raw["providers"] if k != "offered")
    plan: list[Step] = [(("providers", "entries", name, "probe_timeout_secs"), "set", 12),
                        (("providers", "entries", name, "api_key"), "set", Secret("sk-new")),
                        (("server", "port"), "set", 8080)]
    fast, whole = fast_and_whole(CODEC.view_of_raw(raw, "head", "test"), raw, plan, returns)
    assert fast == whole
    assert [c[1] for c in fast[0]] == [("server", "port"),
                                       ("providers", name, "api_key"),
                                       ("providers", name, "probe_timeout_secs")]


@pytest.mark.parametrize("fast", [True, False])
def test_a_map_entry_set_to_none_is_gone_from_the_view_as_from_the_raw_document(
        fast: bool) -> None:
    # found by the property above: the edit records an unset, and the view used to
    # keep the entry as None, unlike any later load of the same document
    store = MemoryConfigStore()
    run(store.save_raw({"channels": {"telegram": {"a": {"token": "x"}, "b": {"token": "y"}}}},
                       actor="setup", source="import"))

    def fn(cfg: Any) -> Any:
        cfg.channels.telegram["a"] = None
        # a config not the copy takes the whole-section path
        return None if fast else msgspec.json.decode(msgspec.json.encode(
            cfg, enc_hook=lambda s: s.reveal()), type=type(cfg), dec_hook=lambda t, v: Secret(v))

    commit = run(store.update_raw(fn, actor="me"))
    assert ("unset", ("channels", "telegram", "a")) in [(c.op, c.path) for c in commit.changes]
    assert list(store.ledger.view().channels.telegram) == ["b"]
    assert list(to_typed(store.ledger.head_state().config).channels.telegram) == ["b"]


# -- raw path edits (`set`/`unset`, `apply_raw`): the head's view patched section by
# section (`TypedView.advanced`) against the whole-document conversion a ledger without
# a view makes


def _raw_paths(doc: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path] if path else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _raw_paths(v, (*path, k))
    return out


@st.composite
def raw_edits(draw: st.DrawFn, doc: dict[str, Any]) -> tuple[dict[Any, Any], list[Any]]:
    paths = _raw_paths(doc) or [("server", "port")]
    extra = [("server", "port"), ("providers", "openai", "api_key"), ("memory", "model"),
             ("channels", "telegram", "x", "token"), ("mystery", "key")]
    pick = st.sampled_from(paths + extra)
    sets = draw(st.dictionaries(pick, value_for(None), max_size=2))
    unsets = draw(st.lists(pick, max_size=1))
    return sets, [p for p in unsets if p not in sets]


def _apply(store: MemoryConfigStore, sets: dict[Any, Any], unsets: list[Any]) -> Any:
    try:
        commit = store.ledger.edit(sets, unsets, actor="me")
    except (ConfigValidationError, ValueError, TypeError) as err:
        return type(err).__name__, str(err)
    return [(c.op, c.path) for c in commit.changes]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_raw_edit_patches_the_view_as_the_whole_conversion_decides(data: Any) -> None:
    raw = CORPUS[data.draw(st.integers(0, len(CORPUS) - 1), label="document")]
    sets, unsets = data.draw(raw_edits(raw))
    with_view, without = MemoryConfigStore(), MemoryConfigStore()
    for store in (with_view, without):
        run(store.save_raw(raw, actor="setup", source="import"))
    with_view.ledger.view()  # a view to patch
    without.ledger._view = None  # as a fresh process's ledger: the whole conversion
    outcome = _apply(with_view, sets, unsets)
    assert outcome == _apply(without, sets, unsets)  # the same changes, or the same error
    head = with_view.ledger.head_state()
    whole = to_typed(head.config, with_view.ledger.vault)
    assert _typed(with_view.ledger.view()) == _typed(whole)
    assert _typed(with_view.ledger.typed()) == _typed(whole)


def test_a_raw_edit_that_seals_a_plain_text_value_reads_back_in_the_patched_view(
        tmp_path: Path) -> None:
    # a URL with a password is sealed; where the schema types it as plain text, the
    # view holds its value, opened from the write's own transaction (not yet committed)
    from ledger import SqliteConfigStore

    store = SqliteConfigStore(tmp_path / "l.db")
    run(store.save_raw({"memory": {"model": "m"}}, actor="setup", source="import"))
    store.ledger.view()
    commit = store.ledger.edit({("memory", "base_url"): "https://u:pw@embed.example"},
                               actor="me")
    assert commit.changes[0].secret is not None  # sealed, not stored as text
    assert store.ledger.view().memory.base_url == "https://u:pw@embed.example"
    run(store.close())


@pytest.mark.parametrize("returns", [False, True])
def test_a_map_replaced_by_one_holding_a_none_entry_is_decided_as_the_whole_path(
        returns: bool) -> None:
    """Found by the property above: a map fn replaces whole (not edited in place) with
    an entry set to None; the fast path kept the None entry in the view."""
    view, raw = site(0)
    fast, whole = fast_and_whole(view, raw, [(("channels", "telegram"), "set", {"": None})],
                                 returns)
    assert fast == whole


def test_a_views_copies_stay_independent_across_edits() -> None:
    """Each edit's copy is made from per-view templates of the sections (issue 16):
    what one edit's fn changes, by attribute or through a C-level copy, reaches neither
    the view nor the next edit's copy."""
    raw = {"server": {"port": 13131}, "tools": {"exec": {"allowlist": ["ls"]}}}
    view = CODEC.view_of_raw(raw, "head", "test")

    def changes_all(cfg: Any) -> None:
        cfg.server.port = 1
        cfg.tools.exec.allowlist.append("rm")
        msgspec.structs.asdict(cfg)["chat"].auto_title = False

    first = view.edit(changes_all, raw)
    assert {c.path for c in first.changes} == {
        ("server", "port"), ("tools", "exec", "allowlist"), ("chat", "auto_title")}
    seen = []
    second = view.edit(lambda cfg: seen.append(
        (cfg.server.port, list(cfg.tools.exec.allowlist), cfg.chat.auto_title)), raw)
    assert seen == [(13131, ["ls"], True)]
    assert (second.changes, second.replaced) == ([], {})
    pristine = view.pristine
    assert (pristine.server.port, pristine.tools.exec.allowlist,
            pristine.chat.auto_title) == (13131, ["ls"], True)


WHATSAPP = {"channels": {"whatsapp": {"personal": {"paired": True, "dm_policy": "allowlist"},
                                      "work-bot": {"paired": True, "dm_policy": "open"}}},
            "providers": {"openai": {"models": ["a"]}, "anthropic": {"models": ["b"]}}}


def _replace_table(c: Any) -> None:  # recorded as an unset and a set: moved to the end
    c.channels.whatsapp["personal"] = {"k": 1}


def _reorder_and_change(c: Any) -> None:  # a change in place: the raw order is kept
    accounts = c.channels.whatsapp
    accounts["personal"] = dict(accounts.pop("personal"), paired=False)


def _add_between(c: Any) -> None:  # the new key is appended, the kept ones stay
    accounts = c.channels.whatsapp
    bot = accounts.pop("work-bot")
    accounts["new-bot"] = {"paired": False}
    accounts["work-bot"] = dict(bot, dm_policy="allowlist")


def _replace_map(c: Any) -> None:  # the whole map, in another order
    c.channels.whatsapp = {"work-bot": {"paired": True, "dm_policy": "open"},
                           "personal": {"paired": False}}


def _reorder_typed(c: Any) -> None:  # sections in a map: changed in place in the raw
    entries = c.providers.entries
    entries["openai"] = entries.pop("openai")
    entries["openai"].enabled = False


def _add_typed_between(c: Any) -> None:
    entries = c.providers.entries
    acme = entries.pop("anthropic")
    entries["mistral"] = type(acme)(enabled=True)
    entries["anthropic"] = acme


@pytest.mark.parametrize("fn", [_replace_table, _reorder_and_change, _add_between,
                                _replace_map, _reorder_typed, _add_typed_between])
def test_the_view_after_an_edit_keeps_the_raw_documents_key_order(fn: Any) -> None:
    """A fresh process reads maps in the raw document's order; the process that wrote
    must serve the same order (hypothesis found `_replace_table`: the view kept the
    account in place while the raw document, replaced by an unset and a set, had moved
    it to the end)."""
    store = MemoryConfigStore()
    run(store.save_raw(WHATSAPP, actor="setup", source="import"))
    run(store.load_raw())
    run(store.update_raw(fn, actor="me"))
    ledger = store.ledger
    whole = to_typed(ledger.head_state().config, ledger.vault)
    assert list(ledger.view().channels.whatsapp) == list(whole.channels.whatsapp)
    assert list(ledger.view().providers.entries) == list(whole.providers.entries)
    assert _typed(ledger.view()) == _typed(whole)
    assert _typed(ledger.typed()) == _typed(whole)


def test_a_null_added_to_a_free_form_map_is_refused_whichever_path_decides() -> None:
    """Found by the property test above: the two paths left different next views for
    an edit adding a null to a free-form map. No such view is made: the edit is
    refused (a stored value is never null), so `outcome` compares that refusal."""
    view, raw = site(74)
    plan = [(("channels",), "read", None),
            (("channels", "entries", "matrix", "my-bot"), "set", 0),
            (("channels", "entries", "matrix"), "add", ("", None))]
    fast, whole = fast_and_whole(view, raw, plan, True)
    assert fast == whole
    assert "unsupported value of type NoneType" in fast[2]
    store = MemoryConfigStore()
    run(store.save_raw(CORPUS[74], actor="setup", source="import"))
    with pytest.raises(ConfigValidationError, match=re.escape('channels.matrix."": unsupported')):
        run(store.update_raw(lambda c: apply_plan(c, plan, True), actor="me"))


def test_a_none_set_in_a_map_of_maps_gives_one_next_view() -> None:
    """Found by the property test above: `channels.matrix["my-bot"] = None` is an unset;
    the whole-section path's next view kept the entry as None (its map of maps kept its
    count, so the nested map that lost the entry was not taken), unlike the raw
    document and the fast path."""
    view, raw = site(70)
    plan = [(("channels", "entries", "matrix", "my-bot"), "set", None)]
    fast, whole = fast_and_whole(view, raw, plan, True)
    assert fast == whole
    assert fast[0] == [("unset", ("channels", "matrix", "my-bot"), None)]
