"""Secrets inside the schema's free-form maps (channel accounts, tool controls).

Moltis types these maps as JSON values, so a token in `channels.telegram.<account>`
cannot be a typed `Secret` field. In the ledger's raw document such a leaf is a
`SecretRef` like any other secret; in the typed config it is a `Secret` (masked in every
display, equal to itself across copies, so an unrelated edit records nothing for it),
and in what the gateway receives (`load_effective`) it is the plain string, exactly
what Moltis would have read from its file.

`revive` turns stored references (as `SecretRef`s from the raw document, or as their
JSON form `{"$secret": ..., "fp": ...}` after a round trip through the typed head
cache) into `Secret`s; `reveal` turns `Secret`s into plain strings. Both walk only the
fields whose type contains a free-form value, found once from the schema.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from ledger._log import get_logger
from ledger.core.secret_refs import Secret, SecretOpener, SecretRef
from ledger.errors import SecretError
from ledger.schema.introspect import TypeNode, is_any, section_info, strip_annotated

__all__ = ["has_freeform", "locate_refs", "node_has_freeform", "reveal", "reveal_counting",
           "revive", "revive_at"]

_log = get_logger("ledger.typed.freeform")


@functools.cache
def _class_has_any(cls: type[msgspec.Struct]) -> bool:
    # From the class's own annotations where they are objects (the schema's modules do
    # not defer them): a fresh process's first typed read asked this of every class of
    # the schema, and building each one's `section_info` (msgspec evaluating every
    # annotation again) cost ~2.5 ms of it (figure 6b). Same answer as the nodes'
    # (tests/test_schema_any.py compares them for every schema class).
    hints = _annotations(cls)
    if hints is None:
        return any(_node_has_any(fn.node) for fn, _ in section_info(cls).positions)
    return any(_type_has_any(hints[name]) for name in cls.__struct_fields__)


def _annotations(cls: type) -> dict[str, Any] | None:
    """Each field's annotation as declared (the nearest class's), or None when one is
    a string (deferred): then only an evaluation tells."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        hints.update(inspect.get_annotations(klass))
    if any(isinstance(hint, str) for hint in hints.values()):
        return None
    return hints


def _type_has_any(tp: Any, optional: bool = False) -> bool:
    """`_node_has_any` of the node `introspect._node` makes of `tp`, from `tp` itself."""
    tp = strip_annotated(tp)
    if tp is Any:
        return not optional  # `Any | None` is a leaf there, not a free-form value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        return len(non_none) == 1 and _type_has_any(non_none[0], optional=True)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _class_has_any(tp)
    if origin is dict:
        return _type_has_any(typing.get_args(tp)[1])
    if origin is list:
        return _type_has_any(typing.get_args(tp)[0])
    return False


@functools.cache  # TypeNodes compare by identity: one answer per schema node
def _node_has_any(node: TypeNode) -> bool:
    if is_any(node):
        return True
    if node.kind == "section" and node.cls is not None:
        return _class_has_any(node.cls)
    if node.kind in ("dict", "list") and node.item is not None:
        return _node_has_any(node.item)
    return False


def has_freeform(cls: type[msgspec.Struct]) -> bool:
    """True if a Struct type holds a free-form value anywhere below it."""
    return _class_has_any(cls)


def node_has_freeform(node: TypeNode) -> bool:
    """True if a schema type holds a free-form value anywhere below it."""
    return _node_has_any(node)


def _as_ref(value: Any) -> SecretRef | None:
    if isinstance(value, SecretRef):
        return value
    if (isinstance(value, dict) and len(value) == 2 and isinstance(value.get("$secret"), str)
            and isinstance(value.get("fp"), str)):
        return SecretRef(ref=value["$secret"], fp=value["fp"])
    return None


def _map(value: Any, fix: Callable[[Any, list[str]], Any], where: list[str]) -> Any:
    """`fix` applied to every leaf of a JSON-like value, copy-on-write: containers that
    hold a changed leaf are new, everything else is the very same object. Never in
    place: free-form values are shared with the raw document (the ledger's state)."""
    if isinstance(value, dict):
        changed = None
        for k, v in value.items():
            new = _map(v, fix, [*where, k])
            if new is not v:
                if changed is None:
                    changed = dict(value)
                changed[k] = new
        return value if changed is None else changed
    if isinstance(value, list):
        items = [_map(v, fix, [*where, str(i)]) for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return fix(value, where)


def _revive_tree(value: Any, opener: SecretOpener | None) -> Any:
    """Stored references (a `SecretRef`, or its JSON form, itself a dict: tested before
    descending) become `Secret`s, copy-on-write."""
    ref = _as_ref(value)
    if ref is not None:
        return Secret.stored(ref, opener)
    if isinstance(value, dict):
        changed = None
        for k, v in value.items():
            new = _revive_tree(v, opener)
            if new is not v:
                if changed is None:
                    changed = dict(value)
                changed[k] = new
        return value if changed is None else changed
    if isinstance(value, list):
        items = [_revive_tree(v, opener) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _reveal_leaf(value: Any, where: list[str]) -> Any:
    if isinstance(value, Secret):
        try:
            return value.reveal()
        except SecretError as err:
            # the gateway gets the masked Secret (its str() is the mask, never a value);
            # one unreadable token must not stop the whole gateway from loading
            _log.warning("a free-form secret cannot be read", path=".".join(where),
                         error=str(err))
    return value


def _walk(obj: Any, node: TypeNode, fix: Callable[[Any, list[str]], Any],
          where: list[str]) -> Any:
    """`fix` applied to every free-form value below `obj` (typed as `node`). Structs
    (fresh from a decode or a conversion) are updated in place; dicts and lists are
    replaced copy-on-write, since they may be shared with the raw document."""
    if is_any(node):
        return fix(obj, where)
    if isinstance(obj, msgspec.Struct):
        if not _class_has_any(type(obj)):
            return obj
        for fn, _flat in section_info(type(obj)).positions:
            if _node_has_any(fn.node):
                value = getattr(obj, fn.attr)
                new = _walk(value, fn.node, fix, [*where, fn.key])
                if new is not value:
                    setattr(obj, fn.attr, new)
        return obj
    item = node.item
    if isinstance(obj, dict) and item is not None and _node_has_any(item):
        changed = None
        for k, v in obj.items():
            new = _walk(v, item, fix, [*where, k])
            if new is not v:
                if changed is None:
                    changed = dict(obj)
                changed[k] = new
        return obj if changed is None else changed
    if isinstance(obj, list) and item is not None and _node_has_any(item):
        items = [_walk(v, item, fix, [*where, str(i)]) for i, v in enumerate(obj)]
        return obj if all(a is b for a, b in zip(items, obj, strict=True)) else items
    return obj


def _node_of(obj: msgspec.Struct) -> TypeNode:
    return TypeNode("section", type(obj), cls=type(obj))


def revive(obj: Any, opener: SecretOpener | None, node: TypeNode | None = None) -> Any:
    """Stored references in free-form values become `Secret`s (the Struct in place; the
    free-form containers copy-on-write)."""
    if node is None:
        node = _node_of(obj)
    return _walk(obj, node, lambda v, _w: _revive_tree(v, opener), [])


# Where a stored reference sits below a decoded value: the steps down to it (a Struct's
# attribute name, a dict's key or a list's index) and the reference found there.
Located = list[tuple[tuple[Any, ...], SecretRef]]


def locate_refs(obj: Any, node: TypeNode) -> Located:
    """Where `revive` would put a `Secret` in `obj` (a fresh decode, typed as `node`).
    Decoding the same bytes again gives the same places, so `revive_at` revives a later
    decode without walking every free-form value again (the walk costs about as much
    as the decode of a large config). Mirrors `_walk`'s descent."""
    out: Located = []
    _locate(obj, node, (), out)
    return out


def _locate(obj: Any, node: TypeNode, steps: tuple[Any, ...], out: Located) -> None:
    if is_any(node):
        _locate_tree(obj, steps, out)
        return
    if isinstance(obj, msgspec.Struct):
        if _class_has_any(type(obj)):
            for fn, _flat in section_info(type(obj)).positions:
                if _node_has_any(fn.node):
                    _locate(getattr(obj, fn.attr), fn.node, (*steps, fn.attr), out)
        return
    item = node.item
    if item is None or not _node_has_any(item):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _locate(v, item, (*steps, k), out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _locate(v, item, (*steps, i), out)


def _locate_tree(value: Any, steps: tuple[Any, ...], out: Located) -> None:
    ref = _as_ref(value)
    if ref is not None:
        out.append((steps, ref))
    elif isinstance(value, dict):
        for k, v in value.items():
            _locate_tree(v, (*steps, k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _locate_tree(v, (*steps, i), out)


def revive_at(obj: Any, located: Located, opener: SecretOpener | None) -> Any:
    """`revive` for a fresh decode of the bytes `located` was found in: each place gets
    its own new `Secret`, in place (every container of a fresh decode is the caller's)."""
    for steps, ref in located:
        secret = Secret.stored(ref, opener)
        if not steps:
            return secret  # the value itself is a reference
        node = obj
        for step in steps[:-1]:
            node = getattr(node, step) if isinstance(node, msgspec.Struct) else node[step]
        if isinstance(node, msgspec.Struct):
            setattr(node, steps[-1], secret)
        else:
            node[steps[-1]] = secret
    return obj


def reveal_counting(obj: Any) -> tuple[Any, int]:
    """`reveal`, and how many free-form secrets stayed `Secret`s (could not be opened)."""
    left = 0

    def leaf(value: Any, where: list[str]) -> Any:
        nonlocal left
        out = _reveal_leaf(value, where)
        if isinstance(out, Secret):
            left += 1
        return out

    result = _walk(obj, _node_of(obj), lambda v, w: _map(v, leaf, w), [])
    return result, left


def reveal(obj: Any) -> Any:
    """`Secret`s in free-form values become their plain strings (copy-on-write below the
    Struct): what the gateway receives."""
    return _walk(obj, _node_of(obj), lambda v, w: _map(v, _reveal_leaf, w), [])
