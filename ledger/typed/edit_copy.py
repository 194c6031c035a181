"""The private copy a typed edit (`update_raw(fn)`) runs on, and what `fn` changed in it.

The cost of an edit follows what `fn` touches, not the size of the config or of a
section (issue 16):

* **The copy is made as it is read.** `edit_copy(pristine)` is a shallow copy of the
  view's own config whose class is an *edit twin* (a subclass adding only a
  `__getattribute__`; same layout, so the copy is `__copy__` plus a class swap). Reading
  a field through an attribute replaces what the slot holds by a private copy first:
  a Struct becomes its own twin copy (one level, copied the same way on its reads), a
  list or dict a private container (`_List`/`_Dict`) whose Structs are twin copies and
  whose nested lists and dicts are copied. Scalars and `Secret`s are immutable and
  stay shared. So no attribute read ever hands out the view's own instance, and
  nothing is decoded. The root's own slots are filled at once (`edit_copy`), so the
  C-level readers of the config (`copy.copy`, `structs.replace`, `asdict`, `astuple`)
  see private sections too; a C-level reader of a section's twin sees that section's
  slots as they are (one more step: values to read, not to change).
* **What changed is found by identity.** A slot `fn` never read still holds the
  view's own object (below the root); `walk` skips those (`is`), and descends only
  into the twins and private dicts `fn` read. At the root, the sections and maps whose
  copies still hold the view's values are found by C-level compares (`RootPlan`,
  `MapPlan`), and a write's next view takes the per-view work over for the sections it
  shares. A value that is not the same object is *canonicalized*: encoded and
  decoded with the schema's type for exactly that position (the decode the whole
  section used to get, now for the changed value alone: the same msgspec types,
  constraints and free-form secret handling), then compared with the old value. The
  raw changes for a changed value come from `convert`'s own `_diff_value`, so they are
  exactly those the whole-section comparison made.
* **The next view is patched.** Each changed Struct is `msgspec.structs.replace`d
  along the changed path with the canonical values; everything else is shared.

Anything the walk cannot decide the way the whole-section path would (a value that
does not encode or validate, a non-text key, an unexpected shape) raises `Unsure`, and
the caller runs the whole-section path on the same copy, which then names the problem
exactly as before.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ledger.core.document import MISSING
from ledger.core.keypaths import KeyPath
from ledger.core.secret_refs import Secret, SecretRef
from ledger.schema.introspect import ROOT, SectionInfo, TypeNode, section_info
from ledger.typed.convert import (
    RawChange,
    _diff_mapping,
    _diff_value,
    _drop_aliases,
    to_raw_value,
)

if TYPE_CHECKING:
    from ledger.typed.edit_plan import RootPlan

__all__ = ["Unsure", "drop_none_entries", "edit_copy", "privatized", "untwin", "walk"]

# values that cannot be changed in place: shared between the view and every copy
_KEEP = frozenset({str, int, float, bool, type(None), Secret, SecretRef})


class _Dict(dict[Any, Any]):
    """A dict a copy owns (made from one of the view's on first read)."""

    __slots__ = ()


class _List(list[Any]):
    """A list a copy owns (made from one of the view's on first read)."""

    __slots__ = ()


# Named as the builtins they stand for: what `fn` sees of them (an error's text, such as
# "'dict' object has no attribute 'append'", or `type(x).__name__`) is then the same
# whichever path its edit takes (the whole-section path hands it plain dicts and lists).
_Dict.__name__ = "dict"  # (not __qualname__: pickle finds the class by it)
_List.__name__ = "list"


_TWINS: dict[type, type] = {}  # a Struct class -> its edit twin
_BASES: dict[type, Any] = {}  # (a Struct class)  # an edit twin -> its Struct class


# How many slots of any copy, in any thread, were made private on read (`_read`): an
# edit whose `fn` left it as it was read no list, map or Struct of the view, so it needs
# no check of what it reached (`TypedView.edit`, RootPlan.reached). Only "changed or
# not" matters, so a lost update between threads is harmless.
_privatized = [0]


def privatized() -> int:
    return _privatized[0]


def _read(self: msgspec.Struct, name: str) -> Any:
    value = object.__getattribute__(self, name)
    cls = type(value)
    if cls in _KEEP or cls in _BASES or cls is _Dict or cls is _List:
        return value  # immutable, or already this copy's own
    if name not in type(self).__struct_fields__:
        return value  # a method or class attribute
    private = _private(value)
    if private is not value:
        msgspec.Struct.__setattr__(self, name, private)
        _privatized[0] += 1
    return private


def _equal(self: msgspec.Struct, other: object) -> bool:
    """A twin equals what it copies (a twin or the Struct itself) field by field, as
    the Struct's own `==` would: `fn` may compare its copy with a config it holds."""
    base = _BASES[type(self)]
    if _BASES.get(type(other), type(other)) is not base:
        return NotImplemented  # type: ignore[no-any-return]
    assert isinstance(other, msgspec.Struct)
    return bool(msgspec.structs.astuple(self) == msgspec.structs.astuple(other))


def _unequal(self: msgspec.Struct, other: object) -> bool:
    equal = _equal(self, other)
    return equal if equal is NotImplemented else not equal


def _twin(cls: type) -> type:
    twin = _TWINS.get(cls)
    if twin is None:
        def body(ns: dict[str, Any]) -> None:
            ns.update(__getattribute__=_read, __module__=cls.__module__,
                      __qualname__=cls.__qualname__, __eq__=_equal,
                      __ne__=_unequal, __hash__=cls.__hash__)

        twin = types.new_class(cls.__name__, (cls,), {}, body)
        _BASES[twin] = cls
        twin = _TWINS.setdefault(cls, twin)
    return twin


def _struct_copy(value: msgspec.Struct) -> msgspec.Struct:
    cls = type(value)
    copy = value.__copy__()  # type: ignore[attr-defined]
    copy.__class__ = _TWINS.get(cls) or _twin(cls)
    return copy  # type: ignore[no-any-return]


def _private(value: Any) -> Any:
    """What a slot of a copy holds once read: its own copy of `value`."""
    if isinstance(value, dict):
        return _Dict({k: _element(v) for k, v in value.items()})
    if isinstance(value, list):
        if _KEEP.issuperset(map(type, value)):
            return _List(value)
        return _List([_element(v) for v in value])
    if isinstance(value, msgspec.Struct):
        return _struct_copy(value)
    return value  # anything else fn put there (a tuple, ...): as it is


def _element(value: Any) -> Any:
    """An item of a container being copied: Structs as twins, containers copied."""
    cls = type(value)
    if cls in _KEEP or cls in _BASES:
        return value
    if isinstance(value, dict):
        return {k: _element(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_element(v) for v in value]
    if isinstance(value, msgspec.Struct):
        return _struct_copy(value)
    return value


# C-level: never through a twin's __getattribute__
_copy_struct: Callable[[Any], Any] = msgspec.Struct.__copy__  # type: ignore[attr-defined]


def edit_copy(pristine: msgspec.Struct, plan: RootPlan) -> Any:
    """A copy of `pristine` for `fn` to change (see the module docstring). Its own
    slots are filled at once (a twin per section, a private map: a C-level copy of the
    section's template each, nothing decoded), so the C-level readers of the root
    (`copy.copy`, `msgspec.structs.replace`, `asdict`, `astuple`) never hand out one of
    the view's instances: an edit made through them is this copy's and is recorded
    (review r6 F5/F5b), and the view's `pristine`, the base of every later diff and of
    the section JSON, is never changed by `fn`."""
    copy = _struct_copy(pristine)
    setter = msgspec.Struct.__setattr__
    for name, template in plan.templates:
        setter(copy, name, _copy_struct(template))
    names, values, entries = plan.names, plan.values, plan.entries
    for i in plan.maps:
        setter(copy, names[i], entries[i].copy(values[i]))  # type: ignore[union-attr]
    return copy


class Unsure(Exception):  # noqa: N818 (a verdict, not a failure: the caller falls back)
    """The walk cannot decide this edit as the whole-section path would: run that."""


Canon = Callable[[Any, TypeNode], Any]  # a value as the decode at that position makes it


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except TypeError:
        return False


def walk(old: msgspec.Struct, new: msgspec.Struct, raw: dict[str, Any], canon: Canon,
         plan: RootPlan) -> tuple[list[RawChange], dict[str, Any], bool]:
    """The raw changes that turn the view's config `old` into `fn`'s copy `new`, the
    new canonical value of each top-level section that changed (by attribute), and
    whether a map in them may be in another order than the raw document will have
    (`_Walker.reorder`: the caller then takes the view from the raw document)."""
    out: list[RawChange] = []
    replaced: dict[str, Any] = {}
    reorder = False
    assert ROOT.cls is not None
    info = section_info(ROOT.cls)
    try:
        olds = msgspec.structs.astuple(old)
        news = msgspec.structs.astuple(new)
    except AttributeError:  # a field fn deleted
        raise Unsure from None
    for i in plan.candidates(olds, news):
        a, b, fn = olds[i], news[i], info.positions[i][0]
        # like `diff_top_level`: the root's old names are not dropped here
        walker = _Walker(canon)
        value = walker.value(a, b, fn.node, (fn.key,), raw.get(fn.key, MISSING))
        if value is a or (walker.loose and _loosely_equal(a, value)):
            # the whole-section path compares a top-level value with Python's `==`
            # first (True == 1): a section equal that way is left as it was
            continue
        out += walker.out
        replaced[fn.attr] = value
        reorder = reorder or walker.reorder
    return out, replaced, reorder


def _loosely_equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except TypeError:
        return False


class _Walker:
    """One top-level value's walk: its raw changes (`out`), whether a value it found
    changed was `==` to the old one all the same (`loose`: 1 for True), and whether a
    map in the new value may be in another order than the raw document after `out`
    (`reorder`). The raw document keeps a map's kept keys where they were and appends
    the new ones, and a table replaced whole is an unset and a set, which moves it to
    the end; the new value has the order `fn` left. Only a map whose order is not
    that, or a map or Struct replaced whole, sets it: a leaf's change never does."""

    __slots__ = ("canon", "loose", "out", "reorder")

    def __init__(self, canon: Canon) -> None:
        self.canon = canon
        self.out: list[RawChange] = []
        self.loose = False
        self.reorder = False

    def value(self, a: Any, b: Any, node: TypeNode, path: KeyPath, raw: Any,
              out: list[RawChange] | None = None) -> Any:
        """`b` at `path` against the old `a`: the new canonical value (`a` itself when
        unchanged), its raw changes appended to `out`."""
        if out is None:
            out = self.out
        cls = node.cls
        if cls is not None and node.kind == "section" and type(a) is cls and (
                _BASES.get(type(b)) is cls):
            # a copy of the old Struct: only what fn read can differ
            return self.section(a, b, section_info(cls), path, raw, out)
        if type(b) is _Dict and node.kind == "dict" and type(a) is dict:
            assert node.item is not None
            return self.mapping(a, b, node.item, path, raw if isinstance(raw, dict) else {},
                                out)
        value = self.canon(b, node)
        if _same(a, value):
            return a
        self.loose = self.loose or _loosely_equal(a, value)
        self.reorder = self.reorder or isinstance(value, (dict, msgspec.Struct))
        _diff_value(a, value, node, path, raw, out)
        return drop_none_entries(value, node)  # as the whole-section path's view

    def section(self, a: Any, b: Any, info: SectionInfo,
                path: KeyPath, raw: Any, out: list[RawChange]) -> Any:
        try:
            olds = msgspec.structs.astuple(a)
            news = msgspec.structs.astuple(b)
        except AttributeError:  # a field fn deleted
            raise Unsure from None
        if olds == news and [*map(type, olds)] == [*map(type, news)]:
            return a  # a copy fn did not change (all C-level: most of a map's values)
        raw_node = raw if isinstance(raw, dict) else {}
        changed: dict[str, Any] = {}
        for (fn, flattened), av, bv in zip(info.positions, olds, news, strict=True):
            if av is bv:
                continue
            if flattened:
                assert fn.node.item is not None
                if type(bv) is _Dict and type(av) is dict:
                    value = self.mapping(av, bv, fn.node.item, path, raw_node, out)
                else:
                    value = self.canon(bv, fn.node)
                    if _same(av, value):
                        value = av
                    else:
                        self.reorder = True  # a whole map replaced
                        _diff_mapping(av, value, fn.node.item, path, raw_node, out)
                        value = drop_none_entries(value, fn.node)
            else:
                key_path = (*path, fn.key)
                mine: list[RawChange] = []
                value = self.value(av, bv, fn.node, key_path,
                                   raw_node.get(fn.key, MISSING), mine)
                if value is not av:  # unequal: old names of the key go first, as before
                    _drop_aliases(info, fn.key, key_path, raw_node, out)
                    out += mine
            if value is not av:
                changed[fn.attr] = value
        return msgspec.structs.replace(a, **changed) if changed else a

    def mapping(self, a: dict[str, Any], b: dict[Any, Any], item: TypeNode, path: KeyPath,
                raw: Any, out: list[RawChange]) -> dict[str, Any]:
        """As `convert._diff_mapping` (removed keys, then `b`'s keys in order)."""
        if not all(type(k) is str for k in b):
            raise Unsure  # a JSON key conversion decides what such a key becomes
        for key in a:
            if key not in b:
                out.append(RawChange("unset", (*path, key)))
        # the same keys in another order alone is no change (the raw document keeps its
        # order; the whole-section path compares with `==`)
        changed = len(a) != len(b) or a.keys() != b.keys()
        new: dict[str, Any] = {}
        for key, bv in b.items():
            av = a.get(key, MISSING)
            if av is MISSING:
                value = self.canon(bv, item)
                out.append(RawChange("set", (*path, key), to_raw_value(value, item)))
                if value is None:  # not in the view (`drop_none_entries`)
                    changed = True
                    continue
                value = drop_none_entries(value, item)
            elif av is bv:
                value = av
            else:
                value = self.value(av, bv, item, (*path, key), raw.get(key, MISSING), out)
                if value is None:  # recorded as an unset: gone, as from the raw document
                    changed = True
                    continue
            changed = changed or value is not av
            new[key] = value
        if changed and list(new) != [*(k for k in a if k in new), *(k for k in new if k not in a)]:
            self.reorder = True  # not kept keys in place and new ones appended
        return new if changed else a


def drop_none_entries(value: Any, node: TypeNode) -> Any:
    """`value` (a fresh decode) without the map entries an edit set to None: the edit
    records them as unsets, and a map read from a raw document never holds None (the
    typed view must be the typed form of the new raw document). Structs in place, maps
    copied when they lose an entry; free-form values are not looked into."""
    if isinstance(value, msgspec.Struct):
        for fn, _flat in section_info(type(value)).positions:
            if fn.node.kind in ("section", "dict", "list"):
                child = getattr(value, fn.attr)
                new = drop_none_entries(child, fn.node)
                if new is not child:
                    setattr(value, fn.attr, new)
        return value
    item = node.item
    if item is None:
        return value
    if node.kind == "dict" and isinstance(value, dict):
        kept = {k: drop_none_entries(v, item) for k, v in value.items() if v is not None}
        # a copy when an entry went, here or in a map below (found by the property test:
        # a map of maps lost a nested None entry when its own count did not change)
        return kept if len(kept) != len(value) or any(
            v is not value[k] for k, v in kept.items()) else value
    if node.kind == "list" and isinstance(value, list):
        items = [drop_none_entries(v, item) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def untwin(value: Any) -> Any:
    """`value` with every twin and private container of a copy made plain again (the
    whole-section path compares an edit it could not validate as plain Structs)."""
    if isinstance(value, msgspec.Struct):
        base = _BASES.get(type(value))
        plain = None
        if base is not None:
            plain = value.__copy__()  # type: ignore[attr-defined]
            plain.__class__ = base
        for name in type(value).__struct_fields__:
            try:
                item = object.__getattribute__(value, name)  # as it is: no copy on read
            except AttributeError:
                continue  # a field fn deleted: left for the conversion to name
            new = untwin(item)
            if new is not item:
                if plain is None:
                    plain = value.__copy__()  # type: ignore[attr-defined]
                setattr(plain, name, new)
        return value if plain is None else plain
    if isinstance(value, dict):
        return {k: untwin(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untwin(v) for v in value]
    return value
