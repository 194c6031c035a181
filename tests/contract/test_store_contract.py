"""The ConfigStore contract: every backend (memory, SQLite, PostgreSQL, file) must pass.

What an embedding gateway relies on: writes record only what changed, a failed write
changes nothing, unknown keys survive, optimistic concurrency is honoured, layers apply
in order, and nothing is lost when many writers race.
"""

from __future__ import annotations

import asyncio

import pytest

from ledger import (
    ConfigValidationError,
    ConflictError,
    Flags,
    InputError,
    MoltisConfig,
    Secret,
)
from ledger.schema.providers import ProviderConfig
from tests.conftest import run


def set_port(port: int):
    def fn(cfg: MoltisConfig) -> None:
        cfg.server.port = port
    return fn


def test_fresh_store_has_defaults(store_factory):
    store = store_factory()
    assert run(store.load_raw()) == MoltisConfig()
    assert run(store.raw_document()) == {}


def test_update_records_only_changed_paths(store_factory):
    store = store_factory()
    commit = run(store.update_raw(set_port(8080), actor="alice", reason="open the port"))
    assert commit.appended
    assert [c.path for c in commit.changes] == [("server", "port")]
    assert run(store.load_raw()).server.port == 8080
    assert run(store.raw_document()) == {"server": {"port": 8080}}


def test_nothing_changed_appends_nothing(store_factory):
    store = store_factory()
    run(store.update_raw(set_port(8080)))
    before = run(store.head_seq())
    commit = run(store.update_raw(set_port(8080)))
    assert not commit.appended
    assert run(store.head_seq()) == before


def test_setting_a_default_does_not_make_it_explicit_but_an_explicit_key_stays(store_factory):
    store = store_factory()
    run(store.update_raw(lambda c: setattr(c.server, "bind", "127.0.0.1")))  # the default
    assert run(store.raw_document()) == {}
    run(store.update_raw(lambda c: setattr(c.server, "bind", "0.0.0.0")))
    run(store.update_raw(lambda c: setattr(c.server, "bind", "127.0.0.1")))
    assert run(store.raw_document()) == {"server": {"bind": "127.0.0.1"}}


def test_fn_raising_appends_nothing(store_factory):
    store = store_factory()
    run(store.update_raw(set_port(8080)))
    before = (run(store.head_seq()), run(store.raw_document()))

    def boom(cfg: MoltisConfig) -> None:
        cfg.server.port = 1
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        run(store.update_raw(boom))
    assert (run(store.head_seq()), run(store.raw_document())) == before


def test_invalid_value_is_rejected_naming_the_path(store_factory):
    store = store_factory()
    run(store.update_raw(set_port(8080)))
    before = run(store.head_seq())
    with pytest.raises(ConfigValidationError, match=r"server\.port"):
        run(store.update_raw(lambda c: setattr(c.server, "port", "abc")))
    with pytest.raises(ConfigValidationError, match=r"server\.port"):
        run(store.update_raw(lambda c: setattr(c.server, "port", 70000)))
    assert run(store.head_seq()) == before
    assert run(store.load_raw()).server.port == 8080


def test_round_trip_appends_nothing(store_factory):
    store = store_factory()
    run(store.save_raw({"server": {"port": 13131, "bind": "0.0.0.0"},
                        "identity": {"name": "Atlas"}, "mystery": {"kept": True}}))
    before = run(store.head_seq())
    commit = run(store.save_raw(run(store.load_raw())))
    assert not commit.appended
    assert run(store.head_seq()) == before


def test_unknown_keys_survive_typed_writes(store_factory):
    store = store_factory()
    run(store.save_raw({"mystery": {"kept": [1, 2]}, "server": {"future_knob": "x"}}))
    run(store.update_raw(set_port(9)))
    cfg = run(store.load_raw())
    cfg.identity.name = "Atlas"
    run(store.save_raw(cfg))
    doc = run(store.raw_document())
    assert doc["mystery"] == {"kept": [1, 2]}
    assert doc["server"]["future_knob"] == "x"
    assert doc["server"]["port"] == 9
    assert doc["identity"] == {"name": "Atlas"}


def test_save_raw_mapping_replaces_the_document(store_factory):
    store = store_factory()
    run(store.save_raw({"server": {"port": 1, "bind": "0.0.0.0"}, "identity": {"name": "A"}}))
    run(store.save_raw({"server": {"port": 2}}))
    assert run(store.raw_document()) == {"server": {"port": 2}}


def test_optional_field_set_to_none_is_unset(store_factory):
    store = store_factory()
    run(store.update_raw(lambda c: setattr(c.server, "external_url", "https://x.example")))
    assert run(store.raw_document()) == {"server": {"external_url": "https://x.example"}}
    run(store.update_raw(lambda c: setattr(c.server, "external_url", None)))
    assert run(store.load_raw()).server.external_url is None
    assert "external_url" not in run(store.raw_document()).get("server", {})


def test_expected_seq_conflict(store_factory):
    store = store_factory()
    run(store.update_raw(set_port(1)))
    seen = run(store.head_seq())
    run(store.update_raw(set_port(2)))
    with pytest.raises(ConflictError):
        run(store.update_raw(set_port(3), expected_seq=seen))
    assert run(store.load_raw()).server.port == 2
    current = run(store.head_seq())
    assert run(store.update_raw(set_port(3), expected_seq=current)).appended


def test_secret_fields_read_back(store_factory):
    store = store_factory()

    def add(cfg: MoltisConfig) -> None:
        cfg.providers["openai"] = ProviderConfig(api_key=Secret("sk-contract-0123456789"),
                                                 models=["gpt-5"])

    run(store.update_raw(add))
    cfg = run(store.load_raw())
    key = cfg.providers["openai"].api_key
    assert isinstance(key, Secret)
    assert key.reveal() == "sk-contract-0123456789"
    assert "sk-contract" not in repr(cfg)
    assert cfg.providers["openai"].models == ["gpt-5"]


def test_empty_actor_is_refused(store_factory):
    store = store_factory()
    with pytest.raises(InputError):
        run(store.update_raw(set_port(1), actor=""))
    assert run(store.raw_document()) == {}


def test_layers_defaults_raw_env_flags(store_factory):
    store = store_factory()
    run(store.save_raw({"server": {"port": 13131, "bind": "0.0.0.0"},
                        "identity": {"name": "${AGENT_NAME}"}}))
    env = {"MOLTIS_SERVER__PORT": "9000", "AGENT_NAME": "Atlas",
           "MOLTIS_TOOLS__AGENT_TIMEOUT_SECS": "notanumber"}
    eff = run(store.load_effective(env=env, flags=Flags(bind="10.0.0.1")))
    assert eff.server.port == 9000
    assert eff.server.bind == "10.0.0.1"
    assert eff.identity.name == "Atlas"
    assert eff.tools.agent_timeout_secs == 600
    meta = run(store.source_metadata(env=env, flags=Flags(bind="10.0.0.1")))
    assert meta["server.port"].layer == "env"
    assert meta["server.port"].variable == "MOLTIS_SERVER__PORT"
    assert meta["server.bind"].layer == "flag"
    assert meta["identity.name"].layer in ("ledger", "file")
    assert meta["identity.name"].substituted == ("AGENT_NAME",)
    assert meta["tools.agent_timeout_secs"].layer == "default"
    assert "MOLTIS_TOOLS__AGENT_TIMEOUT_SECS" in meta["tools.agent_timeout_secs"].ignored[0]
    # the layers never reach the stored document
    run(store.update_raw(lambda c: setattr(c.identity, "emoji", "🦊")))
    doc = run(store.raw_document())
    assert doc["server"] == {"port": 13131, "bind": "0.0.0.0"}
    assert doc["identity"]["name"] == "${AGENT_NAME}"


def test_concurrent_tasks_lose_no_update(store_factory):
    store = store_factory()

    async def main() -> None:
        async def worker() -> None:
            for _ in range(25):
                await store.update_raw(
                    lambda c: setattr(c.tools, "agent_max_iterations",
                                      c.tools.agent_max_iterations + 1))
                await asyncio.sleep(0)

        await asyncio.gather(*(worker() for _ in range(4)))

    run(main())
    assert run(store.load_raw()).tools.agent_max_iterations == 25 + 100


def test_edit_sets_and_unsets_paths(store_factory):
    store = store_factory()
    run(store.edit({("server", "port"): 8080, ("identity", "name"): "Atlas"}))
    run(store.edit({("server", "bind"): "0.0.0.0"}, [("identity",)]))
    assert run(store.raw_document()) == {"server": {"port": 8080, "bind": "0.0.0.0"}}
    with pytest.raises(ConfigValidationError, match=r"server\.port"):
        run(store.edit({("server", "port"): "high"}))


def test_save_effective_never_writes_the_layers_back(store_factory):
    store = store_factory()
    run(store.save_raw({"server": {"port": 1}, "identity": {"name": "${AGENT}"}}))
    env = {"MOLTIS_SERVER__BIND": "0.0.0.0", "AGENT": "Atlas"}
    cfg = run(store.load_effective(env=env))
    assert (cfg.server.bind, cfg.identity.name) == ("0.0.0.0", "Atlas")
    cfg.chat.auto_title = False
    run(store.save_effective(cfg, env=env, reason="settings page"))
    assert run(store.raw_document()) == {
        "server": {"port": 1}, "identity": {"name": "${AGENT}"}, "chat": {"auto_title": False}}


def test_a_copy_changed_after_its_write_returned_changes_nothing(store_factory):
    store = store_factory()
    kept = {}

    def keep(cfg: MoltisConfig) -> None:
        cfg.server.port = 1
        kept["cfg"] = cfg

    run(store.update_raw(keep))
    kept["cfg"].tools.agent_timeout_secs = 5     # a stray change, after the write returned
    kept["cfg"].server.port = 2
    run(store.update_raw(lambda c: setattr(c.identity, "name", "A")))
    assert run(store.raw_document()) == {"server": {"port": 1}, "identity": {"name": "A"}}
