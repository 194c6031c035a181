"""`is_any` / `is_untyped` (`ledger.schema.introspect`): the one test of "this schema
node is typed Any" that convert, plain_refs, list_secrets and freeform share."""

from __future__ import annotations

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
