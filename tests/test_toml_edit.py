"""ledger.stores.toml_edit: path-level edits of TOML text that keep everything else.

The property: whatever the changes and however the file spells its tables (headers,
out-of-order parts, dotted keys, inline tables, arrays of tables), the edited text parses
to exactly the edited document — up to implicit tables that an unset emptied, which a
TOML file cannot keep."""

from __future__ import annotations

import tomllib

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.core.document import apply_changes, get_value, normalize_document, same_value
from ledger.core.events import Change
from ledger.errors import ConfigValidationError
from ledger.stores.toml_edit import edit_document, edit_toml, pruned_tables

SOURCES = [
    "",
    "[a]\nx = 1",  # no newline at the end
    '# header\n\ntop = 1\n[s]\n  x = 1  # keep\n  y.z = 2\n  inl = {a = 1, b = {c = 2}}\n'
    '# about the next one\n[s.sub]\nq = "v"\n[[arr]]\nn = 1\n[[arr]]\nn = 2\n'
    "[other]\nk = 'lit'\n[s.late]\nm = 1\n",
    "[a.b.c]\nx = 1\n[d]\ny = 2\n[a]\nz = 3\n[a.b.e]\nw = 4\n",  # out-of-order parts
    'tools.exec.sandbox.image = "img"\n\n[server]\nport = 1\n',
]
KEYS = st.sampled_from(["a", "b", "x", "s", "sub", "z", "gpt-5.5", "with space"])
VALUES = st.one_of(
    st.integers(-5, 5), st.text(max_size=5), st.booleans(), st.just({}),
    st.lists(st.integers(0, 3), max_size=3),
    st.lists(st.fixed_dictionaries({"n": st.integers(0, 3)}), min_size=1, max_size=2),
)


def S(path: str, value: object) -> Change:
    return Change(op="set", path=tuple(path.split(".")), value=value)


def U(path: str) -> Change:
    return Change(op="unset", path=tuple(path.split(".")))


def _tables(doc: dict, prefix: tuple = ()):
    yield prefix
    for k, v in doc.items():
        if isinstance(v, dict):
            yield from _tables(v, (*prefix, k))


def _paths(doc: dict, prefix: tuple = ()):
    for k, v in doc.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _paths(v, (*prefix, k))


@st.composite
def edits(draw):
    text = draw(st.sampled_from(SOURCES))
    doc = normalize_document(tomllib.loads(text), "test")
    changes: list[Change] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set-new", "set-old", "unset", "replace"]))
        paths, tables = list(_paths(doc)), list(_tables(doc))
        if kind == "unset" and paths:
            batch = [Change(op="unset", path=draw(st.sampled_from(paths)))]
        elif kind == "set-old" and paths:
            path = draw(st.sampled_from(paths))
            if isinstance(get_value(doc, path), dict) and get_value(doc, path):
                continue
            batch = [Change(op="set", path=path, value=draw(VALUES))]
        elif kind == "replace" and tables[1:]:
            path = draw(st.sampled_from(tables[1:]))
            batch = [Change(op="unset", path=path),
                     Change(op="set", path=(*path, draw(KEYS)), value=draw(VALUES))]
        else:
            base = draw(st.sampled_from(tables))
            extra = tuple(draw(st.lists(KEYS, min_size=1, max_size=2)))
            batch = [Change(op="set", path=(*base, *extra), value=draw(VALUES))]
        try:
            doc, _ = apply_changes(doc, batch)
        except ConfigValidationError:  # a value in the way of a table: not an edit
            continue
        changes += batch
    return text, changes, doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits())
def test_edited_text_parses_to_the_edited_document(case):
    text, changes, expected = case
    actual = normalize_document(tomllib.loads(edit_toml(text, changes)), "test")
    assert same_value(actual, expected) or pruned_tables(expected, actual) is not None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edits(), min_size=1, max_size=4))
def test_one_document_edited_again_and_again(cases):
    """The store keeps its last edited tomlkit document for the next write."""
    text = cases[0][0]
    doc = tomlkit.parse(text)
    current = normalize_document(tomllib.loads(text), "test")
    for _, changes, _ in cases:
        try:
            expected, _ = apply_changes(current, changes)
        except ConfigValidationError:  # changes drawn for another document
            continue
        edit_document(doc, changes)
        actual = normalize_document(tomllib.loads(doc.as_string()), "test")
        assert same_value(actual, expected) or pruned_tables(expected, actual) is not None
        current = actual


def test_placement_of_new_keys_and_tables():
    text = "# top\n\n[a]\nx = 1  # c\n# x's notes\n\n# banner of b\n[b]\ny = 2\n"
    assert edit_toml(text, [S("a.z", 3)]) == (
        "# top\n\n[a]\nx = 1  # c\n# x's notes\nz = 3\n\n# banner of b\n[b]\ny = 2\n")
    assert edit_toml(text, [S("a.sub.k", 1)]) == (
        "# top\n\n[a]\nx = 1  # c\n# x's notes\n\n[a.sub]\nk = 1\n\n# banner of b\n[b]\n"
        "y = 2\n")
    assert edit_toml("[a]\nx = 1\n[b]\n", [S("a.sub.k", 1)]) == (
        "[a]\nx = 1\n\n[a.sub]\nk = 1\n\n[b]\n")
    assert edit_toml(text, [S("top", True)]) == (
        "# top\n\ntop = true\n\n[a]\nx = 1  # c\n# x's notes\n\n# banner of b\n[b]\ny = 2\n")
    assert edit_toml(text, [S("c.d.e", "v")]).endswith('y = 2\n\n[c.d]\ne = "v"\n')


def test_in_place_edits_keep_comments_style_and_headers():
    assert edit_toml("[a]\n  x = 1   # why\n", [S("a.x", 2)]) == "[a]\n  x = 2   # why\n"
    assert edit_toml("[a]\nx = [\n  1,\n]\n", [S("a.x", [1, 2])]).count("\n") > 3
    assert edit_toml("[a]\nx = 1\n\n[b]\n", [U("a.x")]) == "[a]\n\n[b]\n"
    assert edit_toml("[a]\nx = 1\ny = 2\n", [U("a"), S("a.z", 3)]) == "[a]\nz = 3\n"
    assert edit_toml("a = {b = 1}\n", [S("a.c", 2)]) == "a = {b = 1, c = 2}\n"
    assert edit_toml("[a]\nb.c = 1\n", [S("a.b.d", 2)]) == "[a]\nb.c = 1\nb.d = 2\n"
    # a table that exists only through its sub-table gets a header above that sub-table
    assert edit_toml("[a.b]\nx = 1\n", [S("a.y", 2)]) == "[a]\ny = 2\n\n[a.b]\nx = 1\n"
