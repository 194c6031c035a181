"""Comment-preserving edits of a `moltis.toml`: apply path-level changes with tomlkit,
touching only the lines that change.

* set an existing key: the value is replaced in place (its trailing comment, indentation
  and key spelling stay; a multi-line array stays multi-line);
* set a new key: it goes after the last key of its table (after a comment block that
  directly follows that key, when a blank line closes the block), before the table's
  sub-tables; a table without keys gets it right below its header;
* a missing table is created as a `[a.b]` header: a sub-table right after its parent's
  keys and sub-tables (before the comments that trail the parent), a top-level table at
  the end of the file. A parent that exists only implicitly (`[a.b.c]` defines `a.b`)
  gets its own `[a.b]` header; inside a dotted key (`x.y = 1`) or an inline table a new
  key stays in that style (`x.z = 2`, `{y = 1, z = 2}`);
* unset removes the key's line(s); a table emptied that way keeps its header.

tomlkit's mapping API is not used for writes: its out-of-order table proxy (a table
split over several places in the file) loses headers and can crash on deletes, and its
append puts a new key after the comment banner of the *next* section. This module edits
the container bodies directly, with the few private tomlkit helpers (`_map`,
`_insert_at`, `_replace_at`, `_raw_append`) that keep tomlkit's own bookkeeping right.
The caller re-parses the result with tomllib and compares it with the expected document,
so a tomlkit surprise can never silently write a wrong config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import tomlkit
from tomlkit import TOMLDocument
from tomlkit.container import Container, ends_with_whitespace
from tomlkit.items import (
    AoT,
    Array,
    Comment,
    InlineTable,
    Item,
    Key,
    Null,
    SingleKey,
    Table,
    Whitespace,
)

from ledger.core.document import Doc, same_value
from ledger.core.events import Change
from ledger.core.keypaths import KeyPath

__all__ = ["edit_document", "edit_toml", "pruned_tables"]

Kind = Literal["root", "header", "implicit", "dotted", "inline"]


@dataclass(frozen=True, slots=True)
class _Part:
    """One place in the file that holds keys of a table (a table split over several
    places, such as `[a]` and a later `[a.b]`, has several parts)."""

    owner: Container | Table | InlineTable
    kind: Kind

    @property
    def box(self) -> Container:
        return self.owner if isinstance(self.owner, Container) else self.owner.value


def edit_toml(text: str, changes: Sequence[Change]) -> str:
    """The TOML text with `changes` (leaf set/unset, plaintext values) applied."""
    doc = tomlkit.parse(text)
    edit_document(doc, changes)
    return doc.as_string()


def edit_document(doc: TOMLDocument, changes: Sequence[Change]) -> None:
    """Apply `changes` to a parsed document in place (`doc.as_string()` renders it)."""
    for i, ch in enumerate(changes):
        if ch.op == "set":
            _set(doc, ch.path, ch.value)
        elif _refilled(ch.path, changes[i + 1:]) and _parts(doc, ch.path):
            _clear(doc, ch.path)  # replaced, not removed: keep the header and its place
        else:
            _unset(doc, ch.path)


def _refilled(path: KeyPath, later: Sequence[Change]) -> bool:
    n = len(path)
    return any(c.op == "set" and c.path[:n] == path and (len(c.path) > n or (
        isinstance(c.value, dict) and not c.value)) for c in later)


# ---------------------------------------------------------------------------------
# finding a table


def _indices(box: Container, key: str) -> list[int]:
    idx = box._map.get(SingleKey(key))
    if idx is None:
        return []
    return sorted(idx) if isinstance(idx, tuple) else [idx]


def _parts(doc: Container, path: KeyPath) -> list[_Part]:
    parts = [_Part(doc, "root")]
    for key in path:
        found: list[_Part] = []
        for part in parts:
            for i in _indices(part.box, key):
                k, item = part.box.body[i]
                if isinstance(item, InlineTable):
                    found.append(_Part(item, "inline"))
                elif isinstance(item, Table):
                    if k is not None and k.is_dotted():
                        found.append(_Part(item, "dotted"))
                    else:
                        found.append(_Part(item, "implicit" if item.is_super_table() else "header"))
        if not found:
            return []
        parts = found
    return parts


def _is_header(key: Key | None, item: Item) -> bool:
    """Whether an entry of a body renders as a `[header]` (so keys cannot follow it)."""
    return isinstance(item, AoT) or (
        isinstance(item, Table) and not (key is not None and key.is_dotted()))


def _last_item(box: Container, before: int) -> Item | None:
    for _, item in reversed(box.body[:before]):
        if not isinstance(item, Null):
            return item
    return None


# ---------------------------------------------------------------------------------
# set


def _set(doc: Container, path: KeyPath, value: Any) -> None:
    parent, key = path[:-1], path[-1]
    parts = _parts(doc, parent) or _create_table(doc, parent)
    hits = [(p, i) for p in parts for i in _indices(p.box, key)]
    if hits:
        part, i = hits[0]
        old = part.box.body[i][1]
        if isinstance(value, dict) and not value and isinstance(old, Table | InlineTable):
            _clear(doc, path)  # already a table: make it an empty one, where it is
            return
        if part.kind == "inline":
            part.owner[key] = _make_item(value, inline=True, old=old)
            return
        new = _make_item(value, inline=part.kind == "dotted", old=old)
        if len(hits) == 1 and not isinstance(old, Table) and not isinstance(new, Table) and (
                isinstance(new, AoT) == isinstance(old, AoT)):
            part.box._replace_at(i, key, new)  # keeps the line's trivia
            return
        _unset(doc, path)  # a table becomes a value or the other way round
        parts = _parts(doc, parent) or _create_table(doc, parent)
    _add(doc, parts, path, value)


def _add(doc: Container, parts: list[_Part], path: KeyPath, value: Any) -> None:
    key = path[-1]
    inline = [p for p in parts if p.kind == "inline"]
    if inline:
        inline[0].owner.append(key, _make_item(value, inline=True))
        return
    tables = [p for p in parts if p.kind in ("root", "header")]
    implicit = [p for p in parts if p.kind == "implicit"]
    dotted = [p for p in parts if p.kind == "dotted"]
    if _table_like(value) and (tables or implicit):
        if isinstance(value, dict):
            _create_table(doc, path)
        else:
            _insert_table(doc, [*tables, *implicit][0], key, _make_item(value, inline=False))
        return
    if tables:
        target = next((p for p in tables if _key_positions(p.box)[0]), tables[0])
    elif dotted:
        target = dotted[-1]
    else:
        target = implicit[0]
        assert isinstance(target.owner, Table)
        target.owner._is_super_table = False  # it has keys now: a header
    _insert_key(target, key, _make_item(value, inline=target.kind == "dotted"))


def _table_like(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value))


def _make_item(value: Any, *, inline: bool, old: Item | None = None) -> Item:
    keep_inline = inline or (old is not None and not isinstance(old, AoT | Table))
    if isinstance(value, dict) and not value:
        return tomlkit.inline_table() if keep_inline else tomlkit.table(False)
    if keep_inline and isinstance(value, dict | list):
        new = tomlkit.item(value, _parent=tomlkit.array())
    else:
        new = tomlkit.item(value)
    if isinstance(new, Array) and isinstance(old, Array) and "\n" in old.as_string():
        new.multiline(True)
    return new


def _key_positions(box: Container) -> tuple[list[int], int]:
    """Indices of the entries that render as `key = value` lines, and of the first
    `[header]` entry (or the body's length)."""
    first = next((i for i, (k, v) in enumerate(box.body) if _is_header(k, v)), len(box.body))
    keys = [i for i, (k, _) in enumerate(box.body[:first]) if k is not None]
    return keys, first


def _insert_key(part: _Part, key: str, item: Item) -> None:
    box = part.box
    keys, first = _key_positions(box)
    body = box.body
    if keys:
        last = keys[-1]
        pos = j = last + 1
        while j < first and isinstance(body[j][1], Comment | Null):
            j += 1
        if j > pos and j < first and isinstance(body[j][1], Whitespace):
            pos = j  # a comment block that a blank line closes belongs to the last key
        previous = body[last][1]
        if not isinstance(previous, Table):
            indent = previous.trivia.indent.rpartition("\n")[2]
            item.trivia.indent = indent if not indent.strip() else ""
    elif part.kind == "root":
        # below the file's opening comment block, when a blank line closes it
        j = 0
        while j < first and isinstance(body[j][1], Comment | Null):
            j += 1
        pos = j + 1 if j < first and isinstance(body[j][1], Whitespace) else 0
        if pos < len(body) and not isinstance(body[pos][1], Whitespace):
            item.trivia.trail = "\n\n"  # a blank line before what follows
    else:
        pos = 0
        if pos < len(body) and _is_header(*body[pos]):
            item.trivia.trail = "\n\n"  # a blank line before the sub-table
    _put(part, pos, key, item)


def _put(part: _Part, pos: int, key: str, item: Item) -> None:
    box = part.box
    if pos < len(box.body):
        box._insert_at(pos, key, item)
    else:
        _end_line(box, pos)
        box._raw_append(SingleKey(key), item)
    if not isinstance(part.owner, Container):
        dict.__setitem__(part.owner, key, item.value)  # the table's own view of its keys


def _end_line(box: Container, before: int) -> None:
    """Make sure the entry before position `before` ends its line."""
    prev = _last_item(box, before)
    if prev is not None and not isinstance(prev, Whitespace | Table | AoT) and (
            "\n" not in prev.trivia.trail):
        prev.trivia.trail += "\n"


def _create_table(doc: Container, path: KeyPath) -> list[_Part]:
    """Create the table at `path` (and missing parents); return its parts."""
    depth = len(path)
    while depth > 0 and not _parts(doc, path[:depth]):
        depth -= 1
    parts = _parts(doc, path[:depth])
    rest = path[depth:]
    if all(p.kind in ("inline", "dotted") for p in parts):
        nested: dict[str, Any] = {}
        for key in reversed(rest[1:]):
            nested = {key: nested}
        _add(doc, parts, (*path[:depth], rest[0]), nested)
        return _parts(doc, path)
    target = next((p for p in parts if p.kind in ("root", "header")), parts[0])
    top = tomlkit.table(len(rest) > 1)
    innermost = top
    for i, key in enumerate(rest[1:], start=2):
        child = tomlkit.table(i < len(rest))
        innermost.raw_append(key, child)
        innermost = child
    _insert_table(doc, target, rest[0], top, innermost)
    return _parts(doc, path)


def _insert_table(doc: Container, part: _Part, key: str, table: Table | AoT | Item,
                  innermost: Table | None = None) -> None:
    box = part.box
    body = box.body
    pos = len(body)
    if part.kind != "root":
        # before the comments that trail the parent table (they usually introduce the
        # next section of the file), but after a comment block that a blank line closes
        while pos > 0 and isinstance(body[pos - 1][1], Comment | Whitespace | Null):
            pos -= 1
        j = pos
        while j < len(body) and isinstance(body[j][1], Comment | Null):
            j += 1
        if j > pos and j < len(body) and isinstance(body[j][1], Whitespace):
            pos = j + 1
    prev = _last_item(box, pos)
    first_element = table.body[0] if isinstance(table, AoT) and table.body else table
    if prev is not None and not ends_with_whitespace(prev):
        first_element.trivia.indent = "\n"
    if pos < len(body):
        more_follows = not isinstance(body[pos][1], Whitespace)
    else:
        more_follows = part.kind != "root" and not _ends_document(doc, part.owner)
    if more_follows:
        last = innermost if innermost is not None else (
            table.body[-1] if isinstance(table, AoT) and table.body else None)
        if isinstance(last, Table):  # a blank line before what follows
            last.value.append(None, Whitespace("\n"))
    _put(part, pos, key, table)


def _ends_document(doc: Container, owner: object) -> bool:
    """Whether `owner` (a table) is the last thing the document renders."""
    box: Container = doc
    while True:
        item = _last_item(box, len(box.body))
        if isinstance(item, AoT):
            item = item.body[-1] if item.body else None
        if item is owner:
            return True
        if not isinstance(item, Table):
            return False
        box = item.value


# ---------------------------------------------------------------------------------
# unset


def _unset(doc: Container, path: KeyPath) -> None:
    for part in _parts(doc, path[:-1]):
        _remove(part, path[-1])


def _clear(doc: Container, path: KeyPath) -> None:
    """Remove every key of a table, keeping its header(s)."""
    for part in _parts(doc, path):
        for key in {k.key for k, _ in part.box.body if k is not None}:
            _remove(part, key)


def _remove(part: _Part, key: str) -> None:
    if _indices(part.box, key):
        part.box.remove(key)
        if not isinstance(part.owner, Container):
            dict.pop(part.owner, key, None)  # the table's own view of its keys


# ---------------------------------------------------------------------------------
# what a file can express


def _only_empty_tables(value: Any) -> bool:
    return isinstance(value, dict) and all(_only_empty_tables(v) for v in value.values())


def pruned_tables(expected: Doc, actual: Doc, prefix: KeyPath = ()) -> list[KeyPath] | None:
    """The tables holding nothing but empty tables that `actual` lacks, when that is its
    only difference from `expected`; else None. A TOML file cannot keep such a table
    when it was only implicit (`[a.b]` defines `a`, `x.y = 1` defines `x`): unsetting
    its last key makes it vanish, and the caller's model follows the file."""
    if not actual.keys() <= expected.keys():
        return None
    out: list[KeyPath] = []
    for key, want in expected.items():
        path = (*prefix, key)
        if key not in actual:
            if not _only_empty_tables(want):
                return None
            out.append(path)
        elif isinstance(want, dict) and isinstance(actual[key], dict):
            below = pruned_tables(want, actual[key], path)
            if below is None:
                return None
            out += below
        elif not same_value(want, actual[key]):
            return None
    return out
