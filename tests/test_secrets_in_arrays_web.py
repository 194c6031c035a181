"""Issue 14 (review findings): secrets inside arrays and URL userinfo in typed string
fields are never served in clear by the web view (timeline, event JSON, show, config,
effective config)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from ledger.web import create_app
from tests.web_helpers import OPERATOR, login, make_client, make_demo

PAGES = ("/", "/api/log", "/api/show", "/config", "/api/config", "/config?effective=1",
         "/api/config?effective=1")


def _client(store: Any) -> Any:
    app = create_app(store, allow_rollback=True)  # the rollback preview page too
    c = make_client(app)
    login(c, app.state.auth.issue_login_token(OPERATOR))
    return c


@pytest.fixture
def demo_store(tmp_path: Path) -> Any:
    store = make_demo(tmp_path / "demo").store()
    yield store
    store.ledger.close()


def _leaks(c: Any, values: list[str]) -> dict[str, list[str]]:
    found = {}
    head = c.get("/api/log").json()
    newest = max(e["seq"] for e in (head["events"] if isinstance(head, dict) else head))
    more = [f"/events/{newest}", f"/api/events/{newest}", "/diff?from=0",
            "/api/diff?from=0", "/blame", "/api/blame", "/providers", "/api/providers",
            "/verify", f"/rollback?to={newest - 1}"]
    for page in [*PAGES, *more]:
        response = c.get(page)
        assert response.status_code == 200, (page, response.status_code)
        text = response.text
        hits = [v for v in values if v in text]
        if hits:
            found[page] = hits
    return found


def test_url_userinfo_password_is_not_served_in_clear(demo_store: Any) -> None:
    password = "pw-in-url-userinfo-0123"
    asyncio.run(demo_store.edit(
        {("mcp", "servers", "gh", "url"): f"https://bot:{password}@mcp.example/sse",
         ("providers", "openai", "base_url"): f"https://proxy:{password}x@llm.example/v1"},
        actor="alice", reason="add gh mcp", source="api"))
    assert _leaks(_client(demo_store), [password]) == {}
    # the gateway gets the whole URL
    eff = asyncio.run(demo_store.load_effective(env={}))
    assert eff.mcp.servers["gh"].url == f"https://bot:{password}@mcp.example/sse"
    assert eff.providers.entries["openai"].base_url == (
        f"https://proxy:{password}x@llm.example/v1")


def test_secret_shaped_unknown_keys_and_secrets_in_arrays_are_not_served(demo_store: Any
                                                                          ) -> None:
    values = ["vendor-key-0123456789", "mychat-token-0123456789", "hook-env-token-0123456789",
              "sk-mcp-arg-0123456789", "tok-mcp-eq-0123456789", "bearer-hdr-0123456789"]
    asyncio.run(demo_store.edit({
        ("vendor", "api_key"): values[0],
        ("channels", "mychat", "acct", "bot_token"): values[1],
        ("hooks", "hooks"): [{"name": "h", "command": "x", "events": ["x"],
                              "env": {"API_TOKEN": values[2]}}],
        ("mcp", "servers", "gh", "command"): "gh-mcp",
        ("mcp", "servers", "gh", "args"): ["--api-key", values[3], f"--token={values[4]}",
                                           "-H", f"Authorization: Bearer {values[5]}"],
    }, actor="alice", reason="integrations", source="api"))
    assert _leaks(_client(demo_store), values) == {}
    eff = asyncio.run(demo_store.load_effective(env={}))
    assert eff.hooks.hooks[0].env == {"API_TOKEN": values[2]}
    assert eff.mcp.servers["gh"].args == ["--api-key", values[3], f"--token={values[4]}",
                                          "-H", f"Authorization: Bearer {values[5]}"]
