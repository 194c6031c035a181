"""What the schema says about itself: each Struct's fields with their TOML keys,
defaults, aliases and flattened catch-all (`section_info`), the type at any raw path
(`field_at`), and which paths hold secrets (`is_secret_path`).

The schema conventions are those of `ledger.schema.base.Section`: `__flatten__` names a
field that collects all other keys (Rust's `serde(flatten)`), `__aliases__` maps old
TOML key names to field names. Everything is computed on first use and cached, so
importing this module costs nothing.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from ledger.core.keypaths import KeyPath
from ledger.core.secret_refs import Secret
from ledger.schema import FREEFORM_SECRETS, MoltisConfig
from ledger.schema.secret_policy import secret_by_name

__all__ = ["ROOT", "FieldNode", "SectionInfo", "TypeNode", "child_keys", "choices_of", "field_at",
           "is_any", "is_free_form_path", "is_known_path", "is_optional", "is_secret_path",
           "is_untyped", "is_untyped_path", "known_prefix", "node_at", "other_spellings",
           "seals_by_name", "secret_patterns", "section_info", "strip_annotated",
           "value_reading"]

Kind = Literal["section", "dict", "list", "secret", "leaf"]


@dataclass(eq=False)
class TypeNode:
    kind: Kind
    annotation: Any
    cls: type[msgspec.Struct] | None = None
    item: TypeNode | None = None  # dict value / list item


@dataclass(eq=False)
class FieldNode:
    attr: str
    key: str
    node: TypeNode
    default: Any
    factory: Callable[[], Any] | None


@dataclass(eq=False)
class SectionInfo:
    cls: type[msgspec.Struct]
    fields: dict[str, FieldNode] = field(default_factory=dict)  # by TOML key
    ordered: list[FieldNode] = field(default_factory=list)
    flatten: FieldNode | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # old key -> TOML key
    # every field in declaration order (as msgspec.structs.astuple lists them), with
    # True for the flattened one
    positions: list[tuple[FieldNode, bool]] = field(default_factory=list)


def strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


@functools.cache  # TypeNodes compare by identity: one answer per schema node
def is_any(node: TypeNode) -> bool:
    """Whether the schema types this node `Any` (a channel account, a JSON blob): a
    free-form value, Moltis takes anything below it."""
    return strip_annotated(node.annotation) is Any


@functools.cache  # TypeNodes compare by identity: one answer per schema node
def is_optional(node: TypeNode) -> bool:
    """Whether the field is an `Option` in Moltis (`X | None` here): null reads as None."""
    tp = strip_annotated(node.annotation)
    return typing.get_origin(tp) in (typing.Union, types.UnionType) \
        and type(None) in typing.get_args(tp)


def is_untyped(node: TypeNode | None) -> bool:
    """Where the schema does not type the value: an unknown key (no node) or `Any`."""
    return node is None or is_any(node)


def _node(tp: Any) -> TypeNode:
    ann = tp
    tp = strip_annotated(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(non_none) == 1:
            inner = _node(non_none[0])
            return TypeNode(inner.kind, ann, inner.cls, inner.item)
        return TypeNode("leaf", ann)
    if tp is Secret:
        return TypeNode("secret", ann)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return TypeNode("section", ann, cls=tp)
    if origin is dict:
        return TypeNode("dict", ann, item=_node(typing.get_args(tp)[1]))
    if origin is list:
        return TypeNode("list", ann, item=_node(typing.get_args(tp)[0]))
    return TypeNode("leaf", ann)


@functools.cache
def section_info(cls: type[msgspec.Struct]) -> SectionInfo:
    info = SectionInfo(cls)
    flatten_attr = getattr(cls, "__flatten__", None)
    # `f.type` is the annotation evaluated by msgspec (extras such as Annotated kept, as
    # `typing.get_type_hints(include_extras=True)` gives it): evaluating the schema's
    # string annotations a second time doubled the first typed read of every process
    for f in msgspec.structs.fields(cls):
        factory = None if f.default_factory is msgspec.NODEFAULT else f.default_factory
        default = None if f.default is msgspec.NODEFAULT else f.default
        fn = FieldNode(f.name, f.encode_name, _node(f.type), default, factory)
        if f.name == flatten_attr:
            info.flatten = fn
        else:
            info.fields[fn.key] = fn
            info.ordered.append(fn)
        info.positions.append((fn, f.name == flatten_attr))
    for old, new in getattr(cls, "__aliases__", {}).items():
        target = next((fn.key for fn in info.ordered if new in (fn.attr, fn.key)), None)
        if target is None:
            raise TypeError(f"{cls.__name__}.__aliases__: {old!r} -> unknown field {new!r}")
        info.aliases[old] = target
    return info


ROOT = _node(MoltisConfig)


def field_at(path: KeyPath, start: TypeNode | None = None) -> TypeNode | None:
    """The schema type at a raw path (None when the schema does not know it), from the
    root or from `start`."""
    node: TypeNode | None = ROOT if start is None else start
    for key in path:
        if node is None:
            return None
        if node.kind == "section" and node.cls is not None:
            info = section_info(node.cls)
            fn = info.fields.get(info.aliases.get(key) or key)
            if fn is not None:
                node = fn.node
            elif info.flatten is not None:
                node = info.flatten.node.item
            else:
                return None
        elif node.kind == "dict":
            node = node.item
        else:
            return None
    return node


def node_at(path: KeyPath) -> TypeNode | None:
    """`field_at` through lists too (an item by its index): None where the schema does
    not type the value (an unknown key, below a free-form value)."""
    node = _walk(path)[0]
    return None if node is None or is_any(node) else node


def is_free_form_path(path: KeyPath) -> bool:
    """Whether `path` (list items by index) is a free-form value or inside one."""
    node = _walk(path, stop_at_any=True)[0]
    return node is not None and is_any(node)


def value_reading(path: KeyPath) -> tuple[str | None, bool]:
    """How serde reads a YAML value at `path` (list items by index) for Moltis, and
    whether it reads it buffered (below a flattened table, such as a provider entry, or
    in a section Moltis reads as an internally tagged enum: `__buffered__`), where every
    value gets `deserialize_any`'s reading first. The kind: "section" (a typed section:
    a key given twice is refused), "table" (a typed map or array), "text" (a string or
    secret: any scalar's text), "text?" (an optional one: a null is none), "refused" (a
    text field read buffered: a number stays a number, which Moltis refuses), "float"
    (`parse_f64`), "scalar" (another typed field: a plain scalar's untagged reading),
    None (not typed). See `ledger.files.yaml_read`."""
    node, buffered = _walk(path)
    if node is None or is_any(node):
        return None, buffered
    if node.kind in ("section", "dict", "list"):
        return ("section" if node.kind == "section" else "table"), buffered
    tp: Any = strip_annotated(node.annotation)
    optional = is_optional(node)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = strip_annotated(args[0]) if len(args) == 1 else None
    if node.kind == "secret" or tp is str:
        kind = "refused" if buffered else "text?" if optional else "text"
    else:
        kind = "float" if tp is float else "scalar"
    return kind, buffered


def _walk(path: KeyPath, stop_at_any: bool = False) -> tuple[TypeNode | None, bool]:
    """The node at `path` (items by index; None: not in the schema, or below a free-form
    value unless `stop_at_any` stops there), and whether serde reads it buffered."""
    node: TypeNode | None = ROOT
    buffered = False
    for key in path:
        if node is None or (stop_at_any and is_any(node)):
            break
        if node.kind == "list":
            node = node.item if key.isdigit() else None
            continue
        if node.kind == "section" and node.cls is not None:
            info = section_info(node.cls)
            buffered = buffered or bool(getattr(node.cls, "__buffered__", False)) or (
                info.flatten is not None and (info.aliases.get(key) or key) not in info.fields)
        node = field_at((key,), node)
    return node, buffered


def other_spellings(path: KeyPath) -> tuple[str, ...]:
    """The other keys Moltis reads as the same field as `path`'s last key, in the same
    table (a field and its serde aliases: `url` for `base_url`). Moltis refuses a table
    holding two of them ("duplicate field"), so a set or unset of one replaces the
    others. () for a key the schema does not know or that has no alias."""
    node = field_at(path[:-1]) if path else None
    if node is None or node.kind != "section" or node.cls is None:
        return ()
    info = section_info(node.cls)
    if not info.aliases:
        return ()
    key = path[-1]
    field = info.aliases.get(key, key)
    if field not in info.fields:
        return ()
    return tuple(k for k in (field, *(old for old, new in info.aliases.items()
                                      if new == field)) if k != key)


@functools.cache  # TypeNodes compare by identity: one answer per schema node
def seals_by_name(node: TypeNode) -> bool:
    """True for map values the schema marks `sealed_by_name()` (a hook's `env`): the
    secret policy's name rule applies to their keys though the schema types them."""
    ann = node.annotation
    while typing.get_origin(ann) is typing.Annotated:
        for meta in typing.get_args(ann)[1:]:
            extra = getattr(meta, "extra", None)
            if isinstance(extra, dict) and extra.get("sealed_by_name"):
                return True
        ann = typing.get_args(ann)[0]
    return False


def choices_of(node: TypeNode) -> tuple[str, ...] | None:
    """The documented values of a free-text field (`ledger.schema.base.choices`)."""
    found = _extra(node, "choices")
    return None if found is None else tuple(found)


def expected_of(node: TypeNode) -> tuple[float, float | None] | None:
    """The range a number is meant to be in (`ledger.schema.base.expected`)."""
    found = _extra(node, "expected")
    return None if found is None else (found[0], found[1])


def _extra(node: TypeNode, name: str) -> Any:
    """The `name` entry of the `extra` of a Meta on the field's type (nested Annotated
    included: `Annotated[UInt8, expected(...)]`), or None."""
    ann = node.annotation
    args = typing.get_args(ann)
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 2 \
            and type(None) in args:
        ann = args[0] if args[1] is type(None) else args[1]  # `X | None`: X's
    while typing.get_origin(ann) is typing.Annotated:
        for meta in typing.get_args(ann)[1:]:
            extra = getattr(meta, "extra", None)
            if isinstance(extra, dict) and name in extra:
                return extra[name]
        ann = typing.get_args(ann)[0]
    return None


def _free_form(node: TypeNode) -> bool:
    """A value typed `Any` (a channel account, a JSON blob): Moltis takes anything below."""
    return node.kind == "leaf" and is_any(node)


def known_prefix(path: KeyPath) -> tuple[int, TypeNode]:
    """How many leading keys of `path` the schema knows, and the node the last of them
    names (the root for 0). Everything below a free-form value counts as known."""
    node = ROOT
    for depth, key in enumerate(path):
        if _free_form(node):
            return len(path), node
        child = field_at((key,), node)
        if child is None:
            return depth, node
        node = child
    return len(path), node


def is_known_path(path: KeyPath) -> bool:
    """True if Moltis knows this path (a field, a map entry, or inside a free-form value)."""
    return known_prefix(path)[0] == len(path)


def child_keys(node: TypeNode) -> list[str]:
    """The fixed key names a node accepts (fields and their old aliases); [] for maps."""
    if node.kind != "section" or node.cls is None:
        return []
    info = section_info(node.cls)
    return [*info.fields, *info.aliases]


@functools.cache
def _secret_trie() -> dict[str, Any]:
    trie: dict[str, Any] = {}

    def walk(node: TypeNode, t: dict[str, Any], depth: int) -> None:
        if depth > 12:
            return
        if node.kind == "section":
            assert node.cls is not None
            info = section_info(node.cls)
            for fn in info.ordered:
                keys = [fn.key, *[o for o, tgt in info.aliases.items() if tgt == fn.key]]
                for key in keys:
                    visit(fn.node, t, key, depth)
            if info.flatten is not None and info.flatten.node.item is not None:
                visit(info.flatten.node.item, t, "*", depth)
        elif node.kind == "dict" and node.item is not None:
            visit(node.item, t, "*", depth)

    def visit(node: TypeNode, t: dict[str, Any], key: str, depth: int) -> None:
        if node.kind == "secret":
            t[key] = True
        elif node.kind in ("section", "dict"):
            child = t.setdefault(key, {})
            if isinstance(child, dict):
                walk(node, child, depth + 1)

    walk(ROOT, trie, 0)
    for pattern in FREEFORM_SECRETS:
        t = trie
        for key in pattern[:-1]:
            nxt = t.setdefault(key, {})
            if not isinstance(nxt, dict):
                break
            t = nxt
        else:
            t[pattern[-1]] = True
    return trie




def is_untyped_path(path: KeyPath) -> bool:
    """True where the schema does not type the value: an unknown key, or a key inside
    a free-form map (a channel account)."""
    return is_untyped(field_at(path))


def _freeform_secret(path: KeyPath) -> bool:
    return any(len(pattern) == len(path)
               and all(p in ("*", k) for p, k in zip(pattern, path, strict=True))
               for pattern in FREEFORM_SECRETS)


@functools.lru_cache(maxsize=8192)
def is_secret_path(path: KeyPath) -> bool:
    """True if the value at this raw config path is a secret: typed `Secret` by the
    schema, one of `FREEFORM_SECRETS`, or a secret-shaped name at an untyped position
    (the policy is `ledger.schema.secret_policy`).

    Walks only the sections along `path` (not the whole schema, as the full table of
    `secret_patterns` does): every CLI command checks a few paths at start-up."""
    node = field_at(path)
    if (node is not None and node.kind == "secret") or _freeform_secret(path):
        return True
    return is_untyped(node) and secret_by_name(path)


def secret_patterns() -> Iterator[str]:
    """Every secret path pattern, for documentation and tests."""
    def walk(t: dict[str, Any], prefix: tuple[str, ...]) -> Iterator[str]:
        for key, child in t.items():
            if child is True:
                yield ".".join((*prefix, key))
            else:
                yield from walk(child, (*prefix, key))
    return walk(_secret_trie(), ())
