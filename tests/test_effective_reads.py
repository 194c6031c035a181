"""A cached `load_effective()` (figure i16i): what it keeps between calls never leaks into
what it returns, and what it depends on is always read again.

* every call returns a config of its own: changing one (a field, a list, a free-form
  map, a secret) changes nothing a later call returns (the first read decodes the
  cached JSON, later ones the MessagePack made from it);
* all those reads are the same config (the same JSON, the same secrets);
* the process environment is read on every call: a MOLTIS_* override or a ${VAR} the
  document uses, set, changed or removed between two calls, shows in the next one;
* a write between two calls shows in the next one.
"""

from __future__ import annotations

import os

import pytest

from ledger import SqliteConfigStore
from tests.conftest import run

DOC = {
    "identity": {"name": "${AGENT_NAME}"},
    "server": {"port": 8080},
    "skills": {"search_paths": ["/a", "/b"]},
    "providers": {"openai": {"api_key": "sk-test-0123456789abcdef", "models": ["gpt-4o"]}},
    "env": {"PLAIN": "x"},
}


@pytest.fixture
def store(tmp_path):
    store = SqliteConfigStore(tmp_path / "moltis.db")
    store.ledger.save_documents(DOC, actor="t")
    return store


def json_of(store, config) -> bytes:
    return store.ledger.codec.encoder.encode(config)


def test_each_read_is_its_own_copy_and_all_are_the_same_config(store, monkeypatch):
    monkeypatch.setenv("AGENT_NAME", "Atlas")
    reads = [run(store.load_effective()) for _ in range(4)]
    first = json_of(store, reads[0])
    for cfg in reads:
        assert json_of(store, cfg) == first
        assert cfg.identity.name == "Atlas"
        assert cfg.providers["openai"].api_key.reveal() == "sk-test-0123456789abcdef"
    for cfg in reads[:3]:  # change everything a caller can reach
        cfg.server.port = 1
        cfg.skills.search_paths.append("/evil")
        cfg.providers["openai"].models.append("mine")
        cfg.providers["openai"].api_key = None
        cfg.env["PLAIN"] = "changed"
        cfg.env["NEW"] = "added"
        after = run(store.load_effective())
        assert json_of(store, after) == first
        assert after is not cfg and after.skills.search_paths is not cfg.skills.search_paths
    assert store.ledger.codec.encoder.encode(reads[3]) == first
    assert store._eff_pack[1]  # the reads after the first came from the MessagePack copy


def test_the_environment_is_read_on_every_call(store, monkeypatch):
    monkeypatch.setenv("AGENT_NAME", "one")
    monkeypatch.delenv("MOLTIS_SERVER__PORT", raising=False)
    for _ in range(3):  # past the first read, onto the cached copy
        assert run(store.load_effective()).identity.name == "one"
    monkeypatch.setenv("AGENT_NAME", "two")
    assert run(store.load_effective()).identity.name == "two"
    monkeypatch.setenv("MOLTIS_SERVER__PORT", "9999")
    assert run(store.load_effective()).server.port == 9999
    assert run(store.load_effective()).server.port == 9999
    os.environ["MOLTIS_SERVER__PORT"] = "9998"  # the same variable, another value
    assert run(store.load_effective()).server.port == 9998
    monkeypatch.delenv("MOLTIS_SERVER__PORT")
    monkeypatch.delenv("AGENT_NAME")
    cfg = run(store.load_effective())
    assert (cfg.server.port, cfg.identity.name) == (8080, "${AGENT_NAME}")


def test_a_write_between_reads_shows_in_the_next(store, monkeypatch):
    monkeypatch.setenv("AGENT_NAME", "Atlas")
    for port in (8081, 8082):
        for _ in range(3):
            run(store.load_effective())
        store.ledger.edit({("server", "port"): port}, actor="t")
        assert run(store.load_effective()).server.port == port
    other = SqliteConfigStore(store.path)  # another connection's write
    other.ledger.edit({("server", "port"): 8083}, actor="t")
    assert run(store.load_effective()).server.port == 8083
