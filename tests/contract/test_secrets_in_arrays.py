"""Issue 14: secrets inside arrays (MCP `args`, `[[hooks.hooks]] env`) and URL userinfo
in fields typed as plain strings (`mcp.servers.*.url`, `providers.*.base_url`), on
every backend.

`update_raw` and `load_effective` work unchanged with them: the gateway gets the plain
values, a round trip records nothing, an unrelated write works, and a change of the
list is stored. The ledger backends store them sealed; the file store keeps Moltis's
plaintext file (it has no vault), as it does for free-form channel secrets.
"""

from __future__ import annotations

from ledger import MoltisConfig
from ledger.core.secret_refs import SecretRef, refs_in
from ledger.schema.agents import HookConfig, HooksConfig, McpServerConfig
from ledger.schema.providers import ProviderConfig
from tests.conftest import run

ARGS = ["--api-key", "sk-CONTRACT-arg-0001", "--token=tok-CONTRACT-eq-0002", "-H",
        "Authorization: Bearer brr-CONTRACT-0003", "--verbose"]
HOOK_ENV = {"API_TOKEN": "hook-CONTRACT-env-0004", "LOG_LEVEL": "debug"}
URL = "https://bot:pwCONTRACTurl0005@mcp.example/sse"
BASE_URL = "https://proxy:pwCONTRACTbase0006@llm.example/v1"
PLAIN = ["sk-CONTRACT-arg-0001", "tok-CONTRACT-eq-0002", "brr-CONTRACT-0003",
         "hook-CONTRACT-env-0004", "pwCONTRACTurl0005", "pwCONTRACTbase0006"]


def _add(cfg: MoltisConfig) -> None:
    cfg.mcp.servers["gh"] = McpServerConfig(command="gh-mcp", args=list(ARGS), url=URL,
                                            transport="sse")
    cfg.hooks = HooksConfig(hooks=[HookConfig(name="audit", command="./audit.sh",
                                              events=["x"], env=dict(HOOK_ENV))])
    cfg.providers.entries.setdefault("openai", ProviderConfig()).base_url = BASE_URL


def _check_gateway(cfg: MoltisConfig) -> None:
    assert cfg.mcp.servers["gh"].args == ARGS
    assert all(type(a) is str for a in cfg.mcp.servers["gh"].args)
    assert cfg.mcp.servers["gh"].url == URL
    assert cfg.hooks is not None and cfg.hooks.hooks[0].env == HOOK_ENV
    assert cfg.providers.entries["openai"].base_url == BASE_URL


def test_update_raw_and_load_effective_with_secrets_in_arrays_and_urls(store_factory):
    store = store_factory()
    commit = run(store.update_raw(_add, reason="add gh mcp and a hook"))
    assert commit.appended
    if store.backend_name != "file":
        assert not any(p in repr(c) for c in commit.changes for p in PLAIN)
        doc = run(store.raw_document())
        args = doc["mcp"]["servers"]["gh"]["args"]
        assert [i for i, a in enumerate(args) if isinstance(a, SecretRef)] == [1, 2, 4]
        assert isinstance(doc["mcp"]["servers"]["gh"]["url"], SecretRef)
        assert isinstance(doc["providers"]["openai"]["base_url"], SecretRef)
        env = doc["hooks"]["hooks"][0]["env"]  # sealed by name: API_TOKEN, not LOG_LEVEL
        assert isinstance(env["API_TOKEN"], SecretRef) and env["LOG_LEVEL"] == "debug"

    # the gateway (and update_raw's fn, and load_raw) get plain values
    _check_gateway(run(store.load_effective(env={})))
    _check_gateway(run(store.load_raw()))
    seen = {}
    run(store.update_raw(lambda c: seen.setdefault("cfg", c)))
    _check_gateway(seen["cfg"])

    # a round trip records nothing: no-op, the same list again, save_raw, save_effective
    assert not run(store.update_raw(lambda c: None)).appended
    assert not run(store.update_raw(
        lambda c: setattr(c.mcp.servers["gh"], "args", list(ARGS)))).appended
    assert not run(store.update_raw(lambda c: setattr(c, "hooks", HooksConfig(hooks=[
        HookConfig(name="audit", command="./audit.sh", events=["x"], env=dict(HOOK_ENV))]))
    )).appended
    assert not run(store.save_raw(run(store.load_raw()))).appended
    assert not run(store.save_effective(run(store.load_effective(env={})), env={})).appended

    # an unrelated write works and touches nothing else
    commit = run(store.update_raw(lambda c: setattr(c.server, "port", 8181)))
    assert [c.path for c in commit.changes] == [("server", "port")]
    cfg = run(store.load_raw())
    cfg.server.port = 8282
    assert [c.path for c in run(store.save_raw(cfg)).changes] == [("server", "port")]

    # a change of the list is stored (the unchanged secrets keep their references)
    before = run(store.raw_document())["mcp"]["servers"]["gh"]["args"]
    commit = run(store.update_raw(
        lambda c: c.mcp.servers["gh"].args.extend(["--password", "pw-CONTRACT-new-0007"])))
    assert [c.path for c in commit.changes] == [("mcp", "servers", "gh", "args")]
    eff = run(store.load_effective(env={}))
    assert eff.mcp.servers["gh"].args == [*ARGS, "--password", "pw-CONTRACT-new-0007"]
    if store.backend_name != "file":
        after = run(store.raw_document())["mcp"]["servers"]["gh"]["args"]
        assert after[:len(ARGS)] == before
        assert isinstance(after[-1], SecretRef)
        assert "pw-CONTRACT-new-0007" not in repr(commit.changes)
        assert len({r.ref for r in refs_in(after)}) == 4
    assert not run(store.update_raw(lambda c: None)).appended
