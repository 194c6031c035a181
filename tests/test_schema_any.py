"""`is_any` / `is_untyped` (`ledger.schema.introspect`): the one test of "this schema
node is typed Any" that convert, plain_refs, list_secrets and freeform share."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ledger.schema.base import Section
from ledger.schema.introspect import field_at, is_any, is_untyped, is_untyped_path


def test_a_free_form_node_is_any_and_a_typed_one_is_not() -> None:
    account = field_at(("channels", "telegram", "main"))
    port = field_at(("server", "port"))
    assert account is not None and port is not None
    assert is_any(account) and is_untyped(account)
    assert not is_any(port) and not is_untyped(port)
    assert is_untyped(None)  # an unknown key
    assert is_untyped_path(("channels", "telegram", "main", "token"))
    assert not is_untyped_path(("server", "port"))


def test_the_answer_is_cached_per_node() -> None:
    node = field_at(("channels", "telegram", "main"))
    assert node is not None
    is_any(node)
    hits = is_any.cache_info().hits
    is_any(node)
    assert is_any.cache_info().hits == hits + 1


# shapes the schema may grow, defined with their annotations as objects (this module
# defers its own): `Any | None` is a leaf to the nodes, not a free-form value
_OptionalMapOfAny = msgspec.defstruct("_OptionalMapOfAny", [("x", dict[str, Any] | None, None)],
                                      bases=(Section,))
_SHAPES = [msgspec.defstruct(name, [("x", tp, None)], bases=(Section,)) for name, tp in (
    ("_OptionalAny", Any | None),
    ("_ListOfAnnotatedAny", list[Annotated[Any, msgspec.Meta(title="t")]] | None),
    ("_EitherOf", dict[str, Any] | int | None),
    ("_NestedOptional", _OptionalMapOfAny | None))]
_SHAPES.insert(1, _OptionalMapOfAny)


def _schema_classes() -> list[type]:
    """Every Struct class reachable from the schema's roots (the config, the provider
    keys file), with the section_info nodes that describe their fields."""
    from ledger.schema import MoltisConfig
    from ledger.schema.introspect import TypeNode, section_info
    from ledger.schema.providers import ProviderConfig

    seen: list[type] = []

    def visit(node: TypeNode | None) -> None:
        if node is None:
            return
        if node.cls is not None and node.cls not in seen:
            seen.append(node.cls)
            for fn, _ in section_info(node.cls).positions:
                visit(fn.node)
        visit(node.item)

    for root in (MoltisConfig, ProviderConfig):
        assert issubclass(root, msgspec.Struct)
        visit(TypeNode("section", root, cls=root))
    return seen


def test_which_classes_hold_a_free_form_value_is_read_from_their_annotations_alike() -> None:
    """freeform._class_has_any reads the classes' own annotations (a fresh process's
    first typed read, figure 6b); its answer is the one the schema's nodes give, for
    every class of the schema and every free-form shape in it (Any, Optional, nested
    in maps and lists, flattened)."""
    from ledger.schema.introspect import is_any, section_info
    from ledger.typed import freeform

    def by_nodes(node) -> bool:  # introspect's nodes alone, no shortcut
        if is_any(node):
            return True
        if node.kind == "section" and node.cls is not None:
            return any(by_nodes(fn.node) for fn, _ in section_info(node.cls).positions)
        return node.item is not None and node.kind in ("dict", "list") and by_nodes(node.item)

    classes = [*_schema_classes(), *_SHAPES]
    assert len(classes) > 80
    answers = {}
    for cls in classes:
        assert freeform._annotations(cls) is not None, f"{cls.__name__}: deferred annotations"
        answers[cls.__name__] = freeform._class_has_any(cls)
        assert answers[cls.__name__] == any(
            by_nodes(fn.node) for fn, _ in section_info(cls).positions), cls.__name__
    assert [answers[c.__name__] for c in _SHAPES] == [False, True, True, False, True]
    # both answers occur (the comparison means something)
    assert answers["MoltisConfig"] and answers["ChannelsConfig"]
    assert not answers["ServerConfig"]
