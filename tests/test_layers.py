"""The layers above the stored document: MOLTIS_* overrides (Moltis's rules, minus its
all-or-nothing failure), ${VAR} substitution, CLI flags and per-path provenance."""

from __future__ import annotations

import os

import pytest

from ledger import Flags, MemoryConfigStore, SqliteConfigStore
from ledger.core.keypaths import format_path
from ledger.typed.env_overrides import parse_env_overrides, parse_env_value
from ledger.typed.layers import effective_config, effective_leaves, substitute
from tests.conftest import run


@pytest.mark.parametrize(("text", "value"), [
    ('["a", "b"]', ["a", "b"]), ('{"k": 1}', {"k": 1}), ("true", True), ("false", False),
    ("60", 60), ("-3", -3), ("1.5", 1.5), ("hello", "hello"), ("[not json", "[not json"),
    ("nan", "nan"), ("", ""),
])
def test_values_parse_in_moltis_order(text, value):
    assert parse_env_value(text) == value
    assert type(parse_env_value(text)) is type(value)


def test_override_names_follow_moltis():
    good, ignored = parse_env_overrides({
        "MOLTIS_TOOLS__EXEC__DEFAULT_TIMEOUT_SECS": "60",
        "MOLTIS_TOOLS__AGENT_MAX_ITERATIONS": "30",   # a single _ stays inside a key
        "MOLTIS_CONFIG_DIR": "/etc/moltis",            # Moltis's own variables: not config
        "MOLTIS_PASSWORD": "hunter2",
        # this library's own
        "MOLTIS_LEDGER_KEY": "b48ab794d7ddf34f86398247f00db626f4e66a729942fc218e77c1de6589f9f8",
        "MOLTIS_NO_SUCH__KEY": "1",
        "MOLTIS_SERVER____PORT": "1",
        "OTHER": "x",
    })
    assert {(o.variable, o.path, o.value) for o in good} == {
        ("MOLTIS_TOOLS__EXEC__DEFAULT_TIMEOUT_SECS", ("tools", "exec", "default_timeout_secs"),
         60),
        ("MOLTIS_TOOLS__AGENT_MAX_ITERATIONS", ("tools", "agent_max_iterations"), 30),
    }
    reasons = {i.variable: i.why for i in ignored}
    assert set(reasons) == {"MOLTIS_NO_SUCH__KEY", "MOLTIS_SERVER____PORT"}
    assert "not a configuration key" in reasons["MOLTIS_NO_SUCH__KEY"]


def test_one_bad_override_does_not_discard_the_others():
    env = {"MOLTIS_SERVER__PORT": "9000", "MOLTIS_TOOLS__AGENT_TIMEOUT_SECS": "notanumber",
           "MOLTIS_SERVER__BIND": "0.0.0.0", "MOLTIS_IDENTITY__NAME": "42"}
    eff = effective_config({"tools": {"agent_timeout_secs": 120}}, env=env)
    assert eff.config.server.port == 9000
    assert eff.config.server.bind == "0.0.0.0"
    assert eff.config.identity.name == "42"   # a string field takes the text as is
    assert eff.config.tools.agent_timeout_secs == 120
    [why] = eff.ignored
    assert why.variable == "MOLTIS_TOOLS__AGENT_TIMEOUT_SECS"
    assert why.path == "tools.agent_timeout_secs"
    assert "Expected int" in why.why


def test_substitution_env_first_then_the_env_table_unresolved_stays():
    doc = {"env": {"TOKEN": "from-table", "ONLY_TABLE": "t"},
           "identity": {"name": "${TOKEN}-${ONLY_TABLE}-${MISSING}"},
           "skills": {"search_paths": ["${HOME_DIR}/skills"]}}
    out, used = substitute(doc, {"TOKEN": "from-env", "HOME_DIR": "/h"}, None)
    assert out["identity"]["name"] == "from-env-t-${MISSING}"
    assert out["skills"]["search_paths"] == ["/h/skills"]
    assert used[("identity", "name")] == ("TOKEN", "ONLY_TABLE")
    assert doc["identity"]["name"] == "${TOKEN}-${ONLY_TABLE}-${MISSING}"  # not touched


def test_flags_win_over_everything():
    env = {"MOLTIS_SERVER__PORT": "9000", "MOLTIS_TLS__ENABLED": "true"}
    eff = effective_config({"server": {"port": 1}}, env=env,
                           flags=Flags(port=8443, bind="::", no_tls=True, tailscale="serve"))
    cfg = eff.config
    assert (cfg.server.port, cfg.server.bind, cfg.tls.enabled, cfg.tailscale.mode) == (
        8443, "::", False, "serve")


def test_every_leaf_of_the_effective_config_has_a_source():
    store = MemoryConfigStore()
    run(store.save_raw({"server": {"port": 13131}}, actor="alice", reason="initial"))
    meta = run(store.source_metadata(env={"MOLTIS_SERVER__BIND": "0.0.0.0"},
                                     flags=Flags(no_tls=True)))
    leaves = [format_path(p) for p in effective_leaves(run(store.load_effective(
        env={"MOLTIS_SERVER__BIND": "0.0.0.0"}, flags=Flags(no_tls=True))))]
    assert set(meta) == set(leaves)
    assert len(leaves) > 300
    assert meta["server.port"].layer == "ledger"
    assert (meta["server.port"].seq, meta["server.port"].actor) == (1, "alice")
    assert meta["server.port"].reason == "initial"
    assert meta["server.bind"].layer == "env"
    assert meta["tls.enabled"].layer == "flag"
    assert meta["tls.enabled"].flag == "--no-tls"
    assert meta["chat.auto_title"].layer == "default"


def test_the_process_environment_is_read_on_every_call(tmp_path, monkeypatch):
    store = SqliteConfigStore(tmp_path / "l.db")
    run(store.save_raw({"server": {"port": 1}, "identity": {"name": "${AGENT}"}}))
    assert run(store.load_effective()).server.port == 1
    monkeypatch.setenv("MOLTIS_SERVER__PORT", "2")
    monkeypatch.setenv("AGENT", "Atlas")
    eff = run(store.load_effective())
    assert (eff.server.port, eff.identity.name) == (2, "Atlas")
    monkeypatch.setenv("MOLTIS_SERVER__PORT", "3")
    assert run(store.load_effective()).server.port == 3
    monkeypatch.delenv("MOLTIS_SERVER__PORT")
    assert run(store.load_effective()).server.port == 1
    assert os.environ.get("AGENT") == "Atlas"
