"""Catching up on other writers' events costs what they changed (issue 16).

A store whose head moved under it (another store or process wrote) replays the new
events and needs the typed view of the new head. The replay is copy-on-write, so the
view is made from the old one by converting again only the top-level sections the
events changed; these tests check that it is exactly the view a whole conversion gives,
through secrets (sealed in the config, and in the keys document), unknown keys and
removed sections, and that one changed key converts one section."""

from __future__ import annotations

from typing import Any

import msgspec

from ledger import SqliteConfigStore
from ledger.typed import head_cache
from ledger.typed.convert import to_typed
from tests.conftest import run

DOC = {"server": {"port": 13131}, "tools": {"agent_timeout_secs": 600},
       "providers": {"anthropic": {"enabled": True}}, "x_unknown": {"kept": 1}}


def whole(store: SqliteConfigStore) -> bytes:
    """The head converted as a whole, encoded as the view encodes its sections."""
    ledger = store.ledger
    state = ledger.head_state()
    typed = to_typed(state.config, ledger.vault, where="test")
    return ledger.codec.encoder.encode(typed)


def viewed(store: SqliteConfigStore) -> bytes:
    return store.ledger.codec.encoder.encode(store.ledger.view())


def counting(monkeypatch: Any) -> dict[str, int]:
    """Count whole and per-section conversions (the real functions still run)."""
    calls = {"whole": 0, "section": 0}
    real_whole, real_section = head_cache.to_typed, head_cache.section_to_typed

    def count_whole(*a: Any, **kw: Any) -> Any:
        calls["whole"] += 1
        return real_whole(*a, **kw)

    def count_section(*a: Any, **kw: Any) -> Any:
        calls["section"] += 1
        return real_section(*a, **kw)

    monkeypatch.setattr(head_cache, "to_typed", count_whole)
    monkeypatch.setattr(head_cache, "section_to_typed", count_section)
    return calls


def test_a_reader_catching_up_gets_the_view_a_whole_conversion_gives(tmp_path):
    path = tmp_path / "v.db"
    writer = SqliteConfigStore(path)
    run(writer.save_raw(DOC, actor="setup", source="import"))
    reader = SqliteConfigStore(path)
    assert viewed(reader) == whole(reader)

    def port(cfg: Any) -> None:
        cfg.server.port += 1

    def timeout_and_port(cfg: Any) -> None:
        cfg.tools.agent_timeout_secs += 5
        cfg.server.port += 1

    steps = [
        lambda: run(writer.update_raw(port, actor="w")),
        lambda: run(writer.update_raw(timeout_and_port, actor="w")),
        lambda: writer.ledger.edit({("providers", "anthropic", "api_key"):
                                    "sk-ant-test-1234567890"}, actor="w"),  # sealed
        lambda: run(writer.providers.set("openai", api_key="sk-openai-0987654321",
                                         actor="w")),
        lambda: writer.ledger.edit({("x_unknown", "more"): 2}, actor="w"),
        lambda: writer.ledger.edit(unsets=[("tools",)], actor="w"),  # a section removed
        lambda: writer.ledger.edit({("tools", "agent_timeout_secs"): 42}, actor="w"),
        lambda: writer.ledger.edit(unsets=[("providers", "openai")], actor="w"),
    ]
    for i, step in enumerate(steps):
        step()
        if i % 2:  # several events caught up on at once, too
            continue
        assert viewed(reader) == whole(reader), f"after step {i}"
    assert viewed(reader) == whole(reader)
    cfg = run(reader.load_raw())
    assert cfg.tools.agent_timeout_secs == 42 and cfg.server.port == 13133
    key = cfg.providers["anthropic"].api_key  # the secret opens in the reader
    assert key is not None and key.reveal() == "sk-ant-test-1234567890"
    assert "openai" not in cfg.providers


def test_one_changed_key_converts_one_section_not_the_config(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    writer = SqliteConfigStore(path)
    run(writer.save_raw(DOC, actor="setup", source="import"))
    reader = SqliteConfigStore(path)
    reader.ledger.view()  # the reader's view of the current head
    calls = counting(monkeypatch)
    for n in range(1, 4):
        writer.ledger.edit({("server", "port"): 14000 + n}, actor="w")
        cfg = reader.ledger.view()
        assert cfg.server.port == 14000 + n
        # per edit, one section each: the writer patching its own view, the reader
        # catching up
        assert calls == {"whole": 0, "section": 2 * n}
    monkeypatch.undo()
    assert viewed(reader) == whole(reader)


def test_a_section_that_cannot_be_converted_alone_falls_back_to_the_whole(tmp_path,
                                                                           monkeypatch):
    path = tmp_path / "f.db"
    writer = SqliteConfigStore(path)
    run(writer.save_raw(DOC, actor="setup", source="import"))
    reader = SqliteConfigStore(path)
    reader.ledger.view()
    calls = counting(monkeypatch)
    writer.ledger.edit(unsets=[("server",)], actor="w")  # removed: schema defaults again
    cfg = reader.ledger.view()
    assert calls["whole"] == 1
    assert cfg.server.port == msgspec.convert({}, type(cfg.server)).port
