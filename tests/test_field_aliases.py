"""A field and its serde alias are one field to Moltis (review r6, F7).

Moltis's schema (crates/config/src/schema: providers.rs `#[serde(alias = "url")]` on
`base_url`; memory.rs `embedding_provider`, `embedding_base_url`, `embedding_model`,
`embedding_api_key`, `embedding_dimensions`) reads an old key as the field itself,
and serde's derive refuses a table holding both ("duplicate field"). So a set or unset
of either spelling replaces the other, and `check` reports a document holding both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import MemoryConfigStore
from ledger.schema.introspect import other_spellings
from ledger.typed.check import check
from tests.conftest import run
from tests.migrated_site import cli_here


def test_other_spellings_follow_the_schema_aliases() -> None:
    assert other_spellings(("providers", "openai", "base_url")) == ("url",)
    assert other_spellings(("providers", "openai", "url")) == ("base_url",)
    assert other_spellings(("memory", "model")) == ("embedding_model",)
    assert other_spellings(("memory", "embedding_dimensions")) == ("embedding_dimension",)
    assert other_spellings(("server", "port")) == ()
    assert other_spellings(("nope", "x")) == ()


@pytest.mark.parametrize(("doc", "path", "value", "gone"), [
    ({"providers": {"openai": {"url": "https://x.example"}}},
     ("providers", "openai", "base_url"), "https://y.example", "url"),
    ({"providers": {"openai": {"base_url": "https://x.example"}}},
     ("providers", "openai", "url"), "https://y.example", "base_url"),
    ({"memory": {"embedding_model": "a"}}, ("memory", "model"), "b", "embedding_model"),
])
def test_a_set_replaces_the_other_spelling(doc, path, value, gone) -> None:
    store = MemoryConfigStore()
    run(store.save_raw(doc, actor="a"))
    run(store.edit({path: value}, actor="a"))
    table = run(store.raw_document())[path[0]]
    if len(path) == 3:
        table = table[path[1]]
    assert gone not in table and table[path[-1]] == value
    assert not [p for p in check(run(store.raw_document())) if "duplicate" in p.message]


def test_an_unset_removes_every_spelling() -> None:
    store = MemoryConfigStore()
    run(store.save_raw({"memory": {"embedding_model": "a", "style": "hybrid"}}, actor="a"))
    run(store.edit(unsets=[("memory", "model")], actor="a"))
    assert run(store.raw_document())["memory"] == {"style": "hybrid"}


def test_check_reports_a_table_holding_two_spellings() -> None:
    problems = check({"providers": {"openai": {"url": "https://x.example",
                                                "base_url": "https://y.example"}}})
    found = [p for p in problems if "duplicate field `base_url`" in p.message]
    assert [p.path for p in found] == ["providers.openai.url"]


def test_cli_set_of_an_aliased_field_does_not_leave_the_old_spelling(tmp_path: Path) -> None:
    from tests.migrated_site import site_env

    env = site_env(tmp_path)
    assert cli_here(env, "set", "providers.openai.url", "https://x.example").returncode == 0
    assert cli_here(env, "set", "providers.openai.base_url", "https://y.example").returncode == 0
    entry = json.loads(cli_here(env, "--json", "get", "providers.openai").stdout)["value"]
    assert "url" not in entry and entry["base_url"] == "https://y.example"
