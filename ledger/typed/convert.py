"""Between the raw document and the typed `MoltisConfig`.

* `to_typed(raw)`: the raw document on top of the schema defaults, validated. Unknown
  keys stay in the raw document (they are not dropped) and `check()` reports them.
* `typed_changes(old, new, raw)`: the path-level changes that a caller's edit of a typed
  config makes, found by comparing sections with the Structs' own (C-level) `==` and
  recursing only into unequal ones; only changed paths are recorded, so explicit keys
  stay explicit and defaults are never written out.

Schema introspection lives in `ledger.schema.introspect`, `check` in `ledger.typed.check`.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from ledger.core.document import MISSING, same_value
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import Secret, SecretOpener, SecretRef
from ledger.errors import ConfigValidationError, SecretError
from ledger.schema import MoltisConfig
from ledger.schema.introspect import (
    ROOT,
    FieldNode,
    SectionInfo,
    TypeNode,
    is_any,
    section_info,
    strip_annotated,
)

__all__ = [
    "RawChange",
    "invalid_values",
    "sanitize_message",
    "section_to_typed",
    "shape",
    "to_raw_value",
    "to_typed",
    "typed_changes",
]



# ---------------------------------------------------------------------------------
# raw -> typed


def _masked(ref: SecretRef) -> str:
    return ref.mask()


Unseal = Callable[[SecretRef], str]
_SCALARS = frozenset({str, int, float, bool, type(None)})


def shape(raw: Any, node: TypeNode, unseal: Unseal = _masked) -> Any:
    """Rearrange a raw value into the typed shape (flatten, aliases) for msgspec.

    A reference at a position the schema types as plain text (a URL with a password, a
    sealed element of a list, a hook's `env` value) becomes `unseal(ref)`: the plain
    value for the gateway's typed config, a mask without the vault."""
    if node.kind == "section" and isinstance(raw, dict):
        assert node.cls is not None
        info = section_info(node.cls)
        out: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for raw_key, value in raw.items():
            key = info.aliases.get(raw_key) or raw_key
            if key != raw_key and key in raw:
                continue  # the current name wins over the old one
            fn = info.fields.get(key)
            if value.__class__ in _SCALARS:  # most leaves: nothing to rearrange or open
                if fn is not None:
                    out[fn.key] = value
                elif info.flatten is not None:
                    extra[key] = value
            elif fn is not None:
                out[fn.key] = shape(value, fn.node, unseal)
            elif info.flatten is not None:
                assert info.flatten.node.item is not None
                extra[key] = shape(value, info.flatten.node.item, unseal)
        if extra:
            assert info.flatten is not None
            out[info.flatten.key] = extra
        return out
    if node.kind == "dict" and isinstance(raw, dict) and node.item is not None:
        if node.item.kind in ("section", "dict", "list"):
            return {k: v if v.__class__ in _SCALARS else shape(v, node.item, unseal)
                    for k, v in raw.items()}
        if _holds_plain_refs(raw.values(), node.item):
            return {k: _plain(v, node.item, unseal) for k, v in raw.items()}
        return raw
    if node.kind == "list" and isinstance(raw, list) and node.item is not None:
        if node.item.kind in ("section", "dict", "list"):
            return [shape(v, node.item, unseal) for v in raw]
        if _holds_plain_refs(raw, node.item):
            return [_plain(v, node.item, unseal) for v in raw]
        return raw
    return _plain(raw, node, unseal)


@functools.cache  # TypeNodes compare by identity: one answer per schema node
def _keeps_refs(node: TypeNode) -> bool:
    """Typed `Secret` (the decode hook makes it one) or free-form (`freeform.revive`)."""
    return node.kind == "secret" or is_any(node)


def _holds_plain_refs(values: Any, item: TypeNode) -> bool:
    # `in` over map(type, …) runs in C: this runs for every list and map of the document
    return SecretRef in map(type, values) and not _keeps_refs(item)



def _plain(raw: Any, node: TypeNode, unseal: Unseal) -> Any:
    cls = raw.__class__
    if cls in _SCALARS:
        return raw  # the common case, first: this runs for every leaf of the document
    if cls is SecretRef:
        return raw if _keeps_refs(node) else unseal(raw)
    if isinstance(raw, list | dict) and not _keeps_refs(node):
        return _deep_plain(raw, unseal)  # a container typed as one value (a union)
    return raw


def _deep_plain(raw: Any, unseal: Unseal) -> Any:
    if raw.__class__ is SecretRef:
        return unseal(raw)
    if isinstance(raw, list):
        return [_deep_plain(v, unseal) for v in raw]
    if isinstance(raw, dict):
        return {k: _deep_plain(v, unseal) for k, v in raw.items()}
    return raw


def _opening(opener: SecretOpener) -> Unseal:
    def unseal(ref: SecretRef) -> str:
        try:
            return opener.open_secret(ref)
        except SecretError:
            # shredded, withheld or no key: the mask (the gateway gets a value that says
            # so, never the reference), as for a free-form secret that cannot be opened
            return ref.mask(destroyed=opener.is_destroyed(ref))
    return unseal


def _secret_hook(opener: SecretOpener | None) -> Callable[[type, Any], Any]:
    def hook(tp: type, obj: Any) -> Any:
        if tp is Secret:
            if isinstance(obj, SecretRef):
                return Secret.stored(obj, opener)
            if isinstance(obj, str):
                return Secret.placeholder(obj) or Secret(obj)
            if isinstance(obj, Secret):
                return obj
            raise msgspec.ValidationError(f"Expected a secret string, got {type(obj).__name__}")
        raise NotImplementedError
    return hook


_plain_hook = _secret_hook(None)


def to_typed(raw: Mapping[str, Any], opener: SecretOpener | None = None,
             where: str = "config") -> MoltisConfig:
    """The typed config for a raw document; ConfigValidationError names the bad path."""
    shaped = shape(raw, ROOT, _masked if opener is None else _opening(opener))
    hook = _plain_hook if opener is None else _secret_hook(opener)
    try:
        typed = msgspec.convert(shaped, MoltisConfig, dec_hook=hook, str_keys=True)
    except msgspec.ValidationError as err:
        path, why = _locate_invalid(raw, ROOT, (), hook) or ((), str(err))
        p = format_path(path)
        raise ConfigValidationError(f"{where}: {p}: {why}", p) from None
    # free-form maps (channel accounts) hold their secrets as references: make them
    # `Secret`s, like the typed secret fields
    from ledger.typed.freeform import revive

    return revive(typed, opener)  # type: ignore[no-any-return]


def section_to_typed(raw: Any, node: TypeNode, opener: SecretOpener | None = None) -> Any:
    """One top-level section's typed value from its raw value, as `to_typed` would make
    it inside the whole config (the root has no cross-section rule). Raises
    msgspec.ValidationError; callers that need the located message use `to_typed`."""
    hook = _plain_hook if opener is None else _secret_hook(opener)
    shaped = shape(raw, node, _masked if opener is None else _opening(opener))
    value = msgspec.convert(shaped, node.annotation, dec_hook=hook, str_keys=True)
    from ledger.typed.freeform import revive  # freeform imports this module

    return revive(value, opener, node)


def _convert_error(value: Any, ann: Any, hook: Callable[[type, Any], Any]) -> str | None:
    try:
        msgspec.convert(value, ann, dec_hook=hook, str_keys=True)
    except msgspec.ValidationError as err:
        return sanitize_message(str(err), ann)
    return None


_AT = re.compile(r" - at `\$[^`]*`$")
_QUOTED = re.compile(r"'[^']*'")


def sanitize_message(msg: str, annotation: Any = None) -> str:
    """A msgspec validation message without its location suffix and without the
    offending value (it may be a secret pasted into the wrong field); for a closed set
    of values, the allowed ones are named instead."""
    text = _QUOTED.sub("(value withheld)", _AT.sub("", msg)).replace("`", "")
    allowed = _literal_values(annotation)
    if allowed and text.startswith("Invalid enum value"):
        text = f"invalid value; expected one of: {', '.join(map(str, allowed))}"
    return text


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    tp = strip_annotated(annotation)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            values = _literal_values(arg)
            if values:
                return values
        return ()
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def _locate_invalid(raw: Any, node: TypeNode, path: KeyPath,
                    hook: Callable[[type, Any], Any]) -> tuple[KeyPath, str] | None:
    """Slow path, taken only after a failed conversion: find the deepest bad raw path
    (a bad value, or a table missing a required key)."""
    found = _collect_invalid(raw, node, path, hook, first_only=True)
    return found[0] if found else None


def invalid_values(raw: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    """Every invalid value of a raw document (deepest paths, document order), not only
    the first one a conversion stops at; [] when `to_typed` would succeed."""
    return _collect_invalid(raw, ROOT, (), _plain_hook, first_only=False)


def _collect_invalid(raw: Any, node: TypeNode, path: KeyPath,
                     hook: Callable[[type, Any], Any], *, first_only: bool
                     ) -> list[tuple[KeyPath, str]]:
    children: list[tuple[Any, TypeNode, KeyPath]] = []
    if node.kind == "section" and isinstance(raw, dict):
        assert node.cls is not None
        info = section_info(node.cls)
        for key, value in raw.items():
            fn = info.fields.get(info.aliases.get(key) or key)
            if fn is not None:
                children.append((value, fn.node, (*path, key)))
            elif info.flatten is not None and info.flatten.node.item is not None:
                children.append((value, info.flatten.node.item, (*path, key)))
    elif node.kind == "dict" and isinstance(raw, dict) and node.item is not None:
        children = [(v, node.item, (*path, k)) for k, v in raw.items()]
    elif node.kind == "list" and isinstance(raw, list) and node.item is not None:
        children = [(v, node.item, (*path, str(i))) for i, v in enumerate(raw)]
    found: list[tuple[KeyPath, str]] = []
    for value, child, child_path in children:
        found += _collect_invalid(value, child, child_path, hook, first_only=first_only)
        if found and first_only:
            return found
    if found:
        return found  # the parent fails only because of its children
    why = _convert_error(shape(raw, node), node.annotation, hook)
    return [(path, why)] if why else []


# ---------------------------------------------------------------------------------
# typed -> raw changes


@dataclass(frozen=True, slots=True)
class RawChange:
    """A change found by comparing typed configs; `value` may still hold `Secret`s."""

    op: Literal["set", "unset"]
    path: KeyPath
    value: Any = None


def to_raw_value(value: Any, node: TypeNode | None = None) -> Any:
    """A typed value as it would be written to the raw document (defaults omitted)."""
    if isinstance(value, msgspec.Struct):
        info = section_info(type(value))
        out: dict[str, Any] = {}
        for fn in info.ordered:
            v = getattr(value, fn.attr)
            if v is None or _is_default(v, fn):
                continue
            out[fn.key] = to_raw_value(v, fn.node)
        if info.flatten is not None:
            for k, v in getattr(value, info.flatten.attr).items():
                out[k] = to_raw_value(v, info.flatten.node.item)
        return out
    if isinstance(value, dict):
        item = node.item if node is not None else None
        return {k: to_raw_value(v, item) for k, v in value.items()}
    if isinstance(value, list | tuple):
        item = node.item if node is not None else None
        return [to_raw_value(v, item) for v in value]
    return value


def _is_default(value: Any, fn: FieldNode) -> bool:
    if fn.factory is None:
        return same_value(value, fn.default) if fn.default is not None else value is None
    if isinstance(value, list | dict):
        return not value
    return bool(value == fn.factory())


def typed_changes(old: MoltisConfig, new: MoltisConfig,
                  raw: Mapping[str, Any]) -> list[RawChange]:
    """The raw-path changes that turn `old` (the typed view of `raw`) into `new`."""
    out: list[RawChange] = []
    _diff_section(old, new, section_info(type(old)), (), raw, out)
    return out


def _diff_section(old: Any, new: Any, info: SectionInfo, path: KeyPath, raw: Any,
                  out: list[RawChange]) -> None:
    if type(new) is not type(old):
        raise ConfigValidationError(
            f"{format_path(path)}: expected a {type(old).__name__}, got {type(new).__name__}",
            format_path(path),
        )
    # Compare all fields at C speed first; only unequal ones are looked at in Python.
    old_values = msgspec.structs.astuple(old)
    new_values = msgspec.structs.astuple(new)
    if old_values == new_values and all(
        type(a) is type(b) for a, b in zip(old_values, new_values, strict=True)
    ):
        return
    raw_node = raw if isinstance(raw, dict) else {}
    for (fn, flattened), a, b in zip(info.positions, old_values, new_values, strict=True):
        if a is b or (type(a) is type(b) and a == b):
            continue
        if flattened:
            assert fn.node.item is not None
            _diff_mapping(a, b, fn.node.item, path, raw_node, out)
            continue
        key_path = (*path, fn.key)
        _drop_aliases(info, fn.key, key_path, raw_node, out)
        _diff_value(a, b, fn.node, key_path, raw_node.get(fn.key, MISSING), out)


def _equal(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except TypeError:
        return False


def _drop_aliases(info: SectionInfo, key: str, path: KeyPath, raw_node: Mapping[str, Any],
                  out: list[RawChange]) -> None:
    for old_key, target in info.aliases.items():
        if target == key and old_key in raw_node:
            out.append(RawChange("unset", (*path[:-1], old_key)))


def _diff_value(a: Any, b: Any, node: TypeNode, path: KeyPath, raw: Any,
                out: list[RawChange]) -> None:
    if b is None:
        if raw is not MISSING or a is not None:
            out.append(RawChange("unset", path))
        return
    if node.kind == "section" and isinstance(a, msgspec.Struct) and isinstance(b, msgspec.Struct):
        _diff_section(a, b, section_info(type(a)), path, raw, out)
        return
    if node.kind == "dict" and isinstance(a, dict) and isinstance(b, dict):
        assert node.item is not None
        _diff_mapping(a, b, node.item, path, raw if isinstance(raw, dict) else {}, out)
        return
    new_raw = to_raw_value(b, node)
    if isinstance(new_raw, dict) and isinstance(raw, dict) and raw:
        out.append(RawChange("unset", path))  # replace the whole table
    out.append(RawChange("set", path, new_raw))


def diff_top_level(field: FieldNode, old: Any, new: Any, raw: Any, out: list[RawChange]) -> None:
    """The changes within one top-level section (the root has no aliases or flatten)."""
    _diff_value(old, new, field.node, (field.key,), raw, out)


def _diff_mapping(a: Mapping[str, Any], b: Mapping[str, Any], item: TypeNode, path: KeyPath,
                  raw: Mapping[str, Any], out: list[RawChange]) -> None:
    for key in a:
        if key not in b:
            out.append(RawChange("unset", (*path, key)))
    for key, bv in b.items():
        av = a.get(key, MISSING)
        if av is MISSING:
            value = to_raw_value(bv, item)
            out.append(RawChange("set", (*path, key), value))
        elif not _equal(av, bv):
            _diff_value(av, bv, item, (*path, key), raw.get(key, MISSING), out)



