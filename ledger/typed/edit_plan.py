"""The per-view half of a typed edit (`ledger.typed.edit_copy`): what making the copy
for `fn` and finding the root slots `fn` left untouched need of a view, worked out once
per view and taken over from the view before for what a write did not replace."""

from __future__ import annotations

import itertools
import operator
from typing import Any

import msgspec

# the copy's own machinery (twins, private containers), shared with edit_copy
from ledger.typed.edit_copy import _BASES, _KEEP, _copy_struct, _Dict, _element, _struct_copy

__all__ = ["MapPlan", "RootPlan"]


class RootPlan:
    """What `edit_copy` and `walk` need of a view's root, worked out once per view (its
    `pristine` never changes). Each section gets a *template*: a twin of it whose slots
    are the section's own, never handed out or read, so a C-level copy of it is a fresh
    twin without the class swap; with it, the section's own slots (the other side of the
    untouched check). Each root map gets its own plan (`MapPlan`); immutable values are
    shared. Issue 16: the copy and the check of ~35 sections per edit.

    `prior` is the plan of the view this one's state follows (a write's next view
    shares every section the write did not replace, as the same object): the entries of
    those sections are taken over, so a run of writes builds a template only for the
    sections each one changed, not for every section on every write."""

    __slots__ = ("_flat", "entries", "maps", "names", "position", "scalars",
                 "section_slots", "sections", "templates", "twin_types", "values")

    def __init__(self, pristine: msgspec.Struct, prior: RootPlan | None = None) -> None:
        # reached()'s: every section's slots in one list and the root slot of each
        # (built by the first edit of this view whose fn read a list, map or Struct)
        self._flat: tuple[list[Any], list[int]] | None = None
        self.values = values = msgspec.structs.astuple(pristine)
        self.names = names = type(pristine).__struct_fields__
        if prior is not None and prior.names is names and self._follow(prior):
            return
        # per slot: None (immutable), a MapPlan, or (template, the section's slots)
        self.entries = entries = [_entry(value) for value in values]
        self.sections = [i for i, e in enumerate(entries) if type(e) is tuple]
        self.maps = [i for i, e in enumerate(entries) if type(e) is MapPlan]
        self.scalars = [i for i, e in enumerate(entries) if e is None]
        self.position = {i: j for j, i in enumerate(self.sections)}
        self.templates = [(names[i], entries[i][0]) for i in self.sections]  # type: ignore[index]
        self.section_slots = [entries[i][1] for i in self.sections]  # type: ignore[index]
        self.twin_types = [type(t) for _, t in self.templates]

    def _follow(self, prior: RootPlan) -> bool:
        """Take `prior`'s plan, with new entries for the slots whose value is not the
        same object; False (nothing taken) when a slot changed its kind."""
        values = self.values
        changed = [*itertools.compress(range(len(values)),
                                       map(operator.is_not, prior.values, values))]
        entries = prior.entries.copy()
        templates = prior.templates.copy()
        section_slots = prior.section_slots.copy()
        for i in changed:
            entry = _entry(values[i])
            if type(entry) is not type(entries[i]):
                return False
            entries[i] = entry
            if type(entry) is tuple:
                j = prior.position[i]
                if type(entry[0]) is not prior.twin_types[j]:
                    return False
                templates[j] = (self.names[i], entry[0])
                section_slots[j] = entry[1]
        self.entries, self.templates, self.section_slots = entries, templates, section_slots
        self.sections, self.maps, self.scalars = prior.sections, prior.maps, prior.scalars
        self.position, self.twin_types = prior.position, prior.twin_types
        return True

    def candidates(self, olds: tuple[Any, ...], news: tuple[Any, ...]) -> list[int]:
        """The root slots of `edit_copy`'s copy (`news`) that may differ from the view's
        (`olds`), in order. A section's twin whose slots all equal the view's
        (identical, or `==` as the whole-section path's top-level compare takes them:
        True == 1) is left out, found by C-level compares; a map copy, when nothing in
        it changed (`MapPlan.untouched`); anything else, when it is the view's own."""
        entries = self.entries
        try:
            twins = [news[i] for i in self.sections]
            if [*map(type, twins)] != self.twin_types:
                return self._each_slot(olds, news)  # fn put another object in a slot
            found = [*itertools.compress(self.sections, map(
                operator.ne, map(msgspec.structs.astuple, twins), self.section_slots))]
            found += [i for i in self.maps
                      if not entries[i].untouched(olds[i], news[i])]  # type: ignore[union-attr]
        except Exception:  # a value fn put there that cannot compare
            return self._each_slot(olds, news)
        found += [i for i in self.scalars if olds[i] is not news[i]]
        found.sort()
        return found

    def reached(self, copy: Any) -> list[int]:
        """The root slots whose view objects `fn` may have changed in place through its
        copy: a section whose twin no longer holds exactly the view's slots (`fn` read
        a list, map or Struct of it, which gives a private copy, or set one), a map whose
        entries are not exactly the template copies, a slot `fn` replaced. A C-level
        reader of a twin (`msgspec.structs.asdict(cfg.hooks)`) hands out the view's own
        nested objects (review r7); an edit that reaches a section through an attribute
        then checks it (`TypedView.edit`). Found in C for the sections."""
        news = msgspec.structs.astuple(copy)
        if self._flat is None:
            self._flat = ([*itertools.chain.from_iterable(self.section_slots)],
                          [*itertools.chain.from_iterable(map(
                              itertools.repeat, self.sections, map(len, self.section_slots)))])
        flat, owner = self._flat
        twins = [news[i] for i in self.sections]
        if [*map(type, twins)] != self.twin_types:
            found = set(self.sections)  # fn put another object in a section's slot
        else:
            found = {owner[j] for j in itertools.compress(range(len(flat)), map(
                operator.is_not, itertools.chain.from_iterable(
                    map(msgspec.structs.astuple, twins)), flat))}
        found.update(i for i in self.maps
                     if not self.entries[i].intact(news[i]))  # type: ignore[union-attr]
        return sorted(found)

    def _each_slot(self, olds: tuple[Any, ...], news: tuple[Any, ...]) -> list[int]:
        """`candidates` slot by slot, by identity alone."""
        found = []
        for i, (a, b, entry) in enumerate(zip(olds, news, self.entries, strict=True)):
            if a is b or (_untouched_twin(a, b) if type(entry) is tuple
                          else _untouched_map(a, b)):
                continue  # the view's own, or edit_copy's own copy with nothing changed
            found.append(i)
        return found


class MapPlan:
    """`RootPlan`'s entry for a root map (`[models]`, `[env]`): how `edit_copy` copies
    it and how `candidates` finds it untouched, in C where its values allow. A map of
    Structs of one class (model presets) keeps a template per entry, as sections do, so
    its copy is a C-level copy per entry and its check compares each entry's slots with
    the view's; a map of immutable values is copied shallow and compared whole; anything
    else is copied entry by entry (`_element`) and checked by identity."""

    __slots__ = ("flat", "keys", "slots", "templates", "twin")

    def __init__(self, value: dict[Any, Any]) -> None:
        self.keys = list(value)
        items = list(value.values())
        self.flat = _KEEP.issuperset(map(type, items))
        self.templates: list[Any] | None = None
        self.slots: list[tuple[Any, ...]] = []
        self.twin: type | None = None
        if items and isinstance(items[0], msgspec.Struct) and all(
                type(v) is type(items[0]) for v in items):
            self.templates = [_struct_copy(v) for v in items]
            self.slots = [msgspec.structs.astuple(v) for v in items]
            self.twin = type(self.templates[0])

    def copy(self, value: dict[Any, Any]) -> dict[Any, Any]:
        """A private copy of `value` (the map this plan was made of), as a plain dict: an
        empty one is then still left out by the encoding's omit_defaults, as the view's
        own is."""
        if self.templates is not None:
            return dict(zip(self.keys, map(_copy_struct, self.templates), strict=True))
        if self.flat:
            return dict(value)
        return _element(value)  # type: ignore[no-any-return]

    def intact(self, b: Any) -> bool:
        """Whether `b`, the copy fn got of this map, still holds exactly the copies
        `copy` made (nothing of the view's reached below it: `RootPlan.reached`)."""
        if self.flat:
            return True  # immutable values: nothing to change in place
        if self.templates is None or type(b) not in (dict, _Dict) or list(b) != self.keys:
            return False
        items = list(b.values())
        return all(map(operator.is_, map(type, items), itertools.repeat(self.twin))) and all(
            map(operator.is_, itertools.chain.from_iterable(map(msgspec.structs.astuple, items)),
                itertools.chain.from_iterable(self.slots)))

    def untouched(self, a: Any, b: Any) -> bool:
        """Whether `b`, the copy fn got of the map `a`, still equals it: the same keys
        in the same order, and each entry's slots (a map of Structs) or each value (a
        flat map) `==` the view's, as the whole-section path's top-level compare."""
        if type(b) not in (dict, _Dict) or list(b) != self.keys:
            return False
        if self.templates is None:
            return bool(b == a) if self.flat else _untouched_map(a, b)
        items = list(b.values())
        return all(map(operator.is_, map(type, items), itertools.repeat(self.twin))) and (
            [*map(msgspec.structs.astuple, items)] == self.slots)


def _entry(value: Any) -> tuple[Any, tuple[Any, ...]] | MapPlan | None:
    if type(value) in _KEEP:
        return None
    if isinstance(value, msgspec.Struct):
        return _struct_copy(value), msgspec.structs.astuple(value)
    return MapPlan(value)


def _untouched_twin(a: Any, b: Any) -> bool:
    """Whether `b` is a twin of the Struct `a` whose slots are all still `a`'s own."""
    return _BASES.get(type(b)) is type(a) and all(
        map(operator.is_, msgspec.structs.astuple(b), msgspec.structs.astuple(a)))


def _untouched_map(a: Any, b: Any) -> bool:
    """Whether `b` is `edit_copy`'s copy of the root map `a`, nothing in it changed:
    the same keys in the same order, each entry the view's own value or a twin whose
    slots are still the view's."""
    if type(a) is not dict or type(b) is not dict or len(a) != len(b) or list(a) != list(b):
        return False
    for key, av in a.items():
        bv = b[key]
        if bv is av:
            continue
        if not _untouched_twin(av, bv):
            return False
    return True
