"""The audit web view in process (starlette's TestClient): authentication, CSRF,
escaping, secrets, the JSON shapes against the CLI's --json, paging, prefixes; and
live updates through a real server on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[dev]'")

from ledger.web import Auth, create_app
from ledger.web import library as lib
from ledger.web.views import plain, visible
from tests.web_helpers import (
    HOSTILE_REASON,
    HOSTILE_SEQ,
    OPERATOR,
    PORT_SEQ,
    ROTATE_SEQ,
    Demo,
    assert_no_secret,
    csrf_of,
    login,
    make_client,
    make_demo,
)

BEARER = "bearer-token-for-scripts-0123456789"
PAGES = ["/", "/?actor=mallory", "/?path=keys:openai", "/?source=rollback", "/?since=2&until=4",
         "/events/1", "/events/5", "/events/6", "/events/7", "/config", "/config?at=1",
         "/config?at=6", "/config?effective=1", "/blame", "/blame?path=keys:", "/verify",
         "/providers", "/diff?from=1", "/diff?from=0&to=7", "/rollback?to=1"]
API = ["/api/log", "/api/log?limit=200", "/api/events/1", "/api/events/5", "/api/events/6",
       "/api/diff?from=0", "/api/show", "/api/show?at=6", "/api/config",
       "/api/config?effective=1", "/api/blame", "/api/verify", "/api/providers"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(tmp_path_factory.mktemp("web-demo"))


@pytest.fixture
def store(demo: Demo) -> Iterator[Any]:
    s = demo.store()
    yield s
    s.ledger.close()


def _app(store: Any, **kw: Any) -> Any:
    app = create_app(store, **kw)
    app.state.auth.add_bearer_token(BEARER, OPERATOR)
    return app


@pytest.fixture
def client(store: Any) -> Any:
    app = _app(store)
    c = make_client(app)
    login(c, app.state.auth.issue_login_token(OPERATOR))
    return c


@pytest.fixture
def writable(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A private demo ledger (rollbacks write to it) and a logged-in client."""
    demo = make_demo(tmp_path / "demo")
    store = demo.store()
    app = _app(store, allow_rollback=True)
    c = make_client(app)
    login(c, app.state.auth.issue_login_token(OPERATOR))
    yield c, store
    store.ledger.close()


# -- authentication -----------------------------------------------------------------


def test_every_page_needs_a_session_or_bearer(store: Any) -> None:
    c = make_client(_app(store))
    for url in PAGES:
        r = c.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", url
    for url in [*API, "/stream"]:
        r = c.get(url)
        assert r.status_code == 401, url
        assert r.headers["www-authenticate"] == "Bearer"
    assert c.post("/rollback", data={"to": "1"}).status_code == 401
    assert c.get("/api/log", headers={"Authorization": "Bearer wrong-token-wrong-token"}
                 ).status_code == 401
    c.cookies.set("moltis_ledger_session", "forged")
    assert c.get("/", follow_redirects=False).status_code == 303
    assert c.get("/api/log", headers={"Authorization": f"Bearer {BEARER}"}).status_code == 200


def test_login_token_works_once_and_sets_a_strict_cookie(store: Any) -> None:
    app = _app(store)
    token = app.state.auth.issue_login_token("alice")
    c = make_client(app)
    r = c.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert token not in r.headers["set-cookie"]
    assert "alice" in c.get("/").text
    other = make_client(app)
    assert other.post("/login", data={"token": token}).status_code == 401
    assert other.get("/", follow_redirects=False).status_code == 303
    # the bearer token also opens a session (any number of times)
    assert other.post("/login", data={"token": BEARER}, follow_redirects=False
                      ).status_code == 303
    # logging out ends the session
    page = other.get("/").text
    assert other.post("/logout", data={"csrf": csrf_of(page)}, follow_redirects=False
                      ).status_code == 303
    assert other.get("/", follow_redirects=False).status_code == 303


def test_tokens_never_in_a_url_and_no_query_login(store: Any) -> None:
    app = _app(store)
    token = app.state.auth.issue_login_token("alice")
    c = make_client(app)
    c.get(f"/login?token={token}")
    assert c.get("/", follow_redirects=False).status_code == 303  # not logged in
    assert c.post("/login", data={"token": token}, follow_redirects=False).status_code == 303


def test_auth_unit() -> None:
    auth = Auth()
    t = auth.issue_login_token("bob")
    assert auth.login("x" * 43) is None
    cookie, session = auth.login(t) or ("", None)
    assert session is not None and session.operator == "bob"
    assert auth.login(t) is None
    assert auth.session(cookie) is session and auth.session(cookie + "x") is None
    with pytest.raises(ValueError, match="16"):
        auth.add_bearer_token("short", "bob")


# -- CSRF, origin, rollback ------------------------------------------------------------


def _heads(store: Any) -> int:
    return asyncio.run(store.head_seq())


def test_rollback_needs_the_flag(client: Any, store: Any) -> None:
    assert client.get("/rollback?to=1").status_code == 403
    page = client.get("/events/3").text
    assert "/rollback?to=" not in page
    head = _heads(store)
    r = client.post("/rollback", data={"csrf": csrf_of(page), "to": "1",
                                       "expected_seq": str(head), "reason": "x"})
    assert r.status_code == 403 and _heads(store) == head
    r = client.post("/api/rollback", data={"to": "1", "dry_run": "1"},
                    headers={"Authorization": f"Bearer {BEARER}"})
    assert r.status_code == 403


def test_rollback_refuses_wrong_csrf_cross_origin_and_no_reason(writable: Any) -> None:
    client, store = writable
    head = _heads(store)
    preview = client.get("/rollback?to=2")
    assert preview.status_code == 200 and "Confirm rollback" in preview.text
    good = csrf_of(preview.text)
    form = {"to": "2", "expected_seq": str(head), "reason": "undo"}
    assert client.post("/rollback", data=form).status_code == 403
    assert client.post("/rollback", data={**form, "csrf": "wrong" + good}).status_code == 403
    assert client.post("/rollback", data={**form, "csrf": good},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/rollback", data={**form, "csrf": good},
                       headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    r = client.post("/rollback", data={**form, "csrf": good, "reason": "  "})
    assert r.status_code == 400 and "reason is required" in r.text
    assert _heads(store) == head  # nothing was appended
    # a stale preview is refused (the ledger moved on)
    r = client.post("/rollback", data={**form, "csrf": good, "expected_seq": str(head - 1)})
    assert r.status_code == 409 and _heads(store) == head
    r = client.post("/rollback", data={**form, "csrf": good}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/events/{head + 1}?rolled_back=1"
    ev = client.get(f"/api/events/{head + 1}").json()
    assert (ev["actor"], ev["source"], ev["reason"], ev["rollback_to"]) == (
        OPERATOR, "rollback", "undo", 2)
    assert client.get("/api/show").json() == client.get("/api/show?at=2").json()


def test_api_rollback_matches_the_cli(writable: Any, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    client, store = writable
    bearer = {"Authorization": f"Bearer {BEARER}"}
    dry = client.post("/api/rollback", data={"to": "1", "dry_run": "1"}, headers=bearer)
    assert dry.status_code == 200
    cli = _cli_json(store, capsys, monkeypatch, "rollback", "--to", "1", "--dry-run")
    assert dry.json() == cli
    assert client.post("/api/rollback", data={"to": "1"}, headers=bearer).status_code == 400
    done = client.post("/api/rollback", data={"to": "1", "reason": "back to the import"},
                       headers=bearer).json()
    assert done["appended"] and done["changes"] == cli["changes"]


# -- escaping and secrets ------------------------------------------------------------


def test_a_hostile_reason_is_text(client: Any) -> None:
    for url in ("/", f"/events/{HOSTILE_SEQ}", "/blame?path=identity"):
        html = client.get(url).text
        assert "<script>window" not in html and "<img src=x" not in html, url
        assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html, url
        assert "\x1b" not in html and "\u202e" not in html, url
        assert '<span class="ctl" title="hidden character U+001B">\\x1b</span>' in html, url
        assert "\\u202e</span>" in html, url
    assert "Atlas &lt;b&gt;bold&lt;/b&gt;" in client.get("/config").text
    # JSON keeps the reason as it is (JSON-escaped, served as application/json)
    r = client.get(f"/api/events/{HOSTILE_SEQ}")
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["reason"] == HOSTILE_REASON


def test_visible_and_plain() -> None:
    assert str(visible("a<b>\x00\u200b")) == (
        'a&lt;b&gt;<span class="ctl" title="hidden character U+0000">\\x00</span>'
        '<span class="ctl" title="hidden character U+200B">\\u200b</span>')
    assert plain("ok \u202e\n") == "ok \\u202e\\n"  # the CLI's rule: ledger.core.escape
    assert str(visible(["x", 1])) == "[&#34;x&#34;, 1]"


def test_no_secret_in_any_page_or_json(client: Any) -> None:
    for url in [*PAGES, *API]:
        r = client.get(url)
        assert r.status_code in (200, 403), (url, r.status_code, r.text[:500])
        assert_no_secret(r.text, url)
    providers = client.get("/api/providers").json()
    assert providers["openai"]["apiKey"].startswith("<secret fp:")
    effective = client.get("/api/config?effective=1").json()
    token_row = next(r for r in effective["rows"] if r["path"] == "env.WEB_TOKEN")
    assert token_row["value"].startswith("<secret")


def test_strict_csp_and_no_inline_script(client: Any) -> None:
    for url in PAGES:
        r = client.get(url)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\bsrc=)", r.text), url
        assert not re.search(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", r.text), url
        assert "style=" not in r.text, url


# -- the JSON shapes are the CLI's ----------------------------------------------------


def _cli_json(store: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
              *args: str) -> Any:
    from ledger.cli import run

    monkeypatch.delenv("MOLTIS_LEDGER_KEY", raising=False)
    config_dir = Path(store.path).parents[1] / "config"  # the demo's key file is there
    capsys.readouterr()
    code = run(["--config-dir", str(config_dir), "--db", str(store.path), "--json", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


@pytest.mark.parametrize(("url", "argv"), [
    ("/api/log?limit=50", ["log", "--limit", "50"]),
    ("/api/log?actor=alice", ["log", "--actor", "alice"]),
    ("/api/log?path=keys:openai", ["log", "--path", "keys:openai"]),
    ("/api/log?since=2&until=4", ["log", "--since", "2", "--until", "4"]),
    ("/api/diff?from=1", ["diff", "1"]),
    ("/api/diff?from=1&to=3&path=tools", ["diff", "1", "3", "--path", "tools"]),
    ("/api/blame?path=server", ["blame", "server"]),
    ("/api/blame?path=keys:openai&at=4", ["blame", "keys:openai", "--at", "4"]),
    ("/api/show?at=2", ["show", "--at", "2"]),
    ("/api/verify", ["verify"]),
    ("/api/providers", ["providers", "list"]),
])
def test_json_mirrors_the_cli(client: Any, store: Any, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch, url: str,
                              argv: list[str]) -> None:
    web = client.get(url).json()
    cli = _cli_json(store, capsys, monkeypatch, *argv)
    if argv[0] == "log":
        web.pop("next_before")
    assert web == cli


def test_event_json_is_the_log_object_plus_its_diff(client: Any) -> None:
    log = {e["seq"]: e for e in client.get("/api/log").json()["events"]}
    ev = client.get(f"/api/events/{PORT_SEQ}").json()
    diff = ev.pop("diff")
    assert ev == log[PORT_SEQ]
    assert diff == client.get(f"/api/diff?from={PORT_SEQ - 1}&to={PORT_SEQ}").json()
    assert diff["changes"] == [{"doc": "config", "path": "server.port", "kind": "changed",
                                "old": 13131, "new": 8080}]


# -- pages ---------------------------------------------------------------------------


def test_config_as_of_an_earlier_seq(client: Any) -> None:
    rows = {r["path"]: r for r in client.get("/api/config?at=1").json()["rows"]}
    assert rows["server.port"]["value"] == 13131
    assert rows["server.port"]["set_by"]["seq"] == 1
    rows = {r["path"]: r for r in client.get(f"/api/config?at={PORT_SEQ}").json()["rows"]}
    assert (rows["server.port"]["value"], rows["server.port"]["set_by"]["actor"]) == (8080,
                                                                                       "alice")
    html = client.get("/config?at=1").text
    assert "Configuration as of seq 1" in html and "13131" in html
    assert client.get("/config?at=999").status_code == 400


def test_effective_config_names_the_env_layer(client: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLTIS_SERVER__PORT", "9999")
    rows = {r["path"]: r for r in client.get("/api/config?effective=1").json()["rows"]}
    assert rows["server.port"]["value"] == 9999
    assert rows["server.port"]["layer"]["layer"] == "env"
    assert rows["server.port"]["layer"]["variable"] == "MOLTIS_SERVER__PORT"
    assert rows["server.bind"]["layer"]["layer"] == "ledger"
    assert "MOLTIS_SERVER__PORT" in client.get("/config?effective=1").text


def test_verify_page_and_signing_key_only_when_offered(client: Any, store: Any) -> None:
    report = client.get("/api/verify").json()
    assert report["ok"] and report["key_fingerprint"] == store.signing_key_fingerprint()
    html = client.get("/verify").text
    assert report["head_hash"] in html and "signing key" in html
    assert report["key_fingerprint"] in html


def test_providers_page_names_who_set_each_key(client: Any) -> None:
    html = client.get("/providers").text
    doc = asyncio.run(lib.providers(client.app.state.store))
    assert doc["set_by"]["openai"]["apiKey"]["actor"] == "alice"
    assert doc["set_by"]["openai"]["apiKey"]["seq"] == ROTATE_SEQ
    mask = doc["providers"]["openai"]["apiKey"]
    assert mask.startswith("<secret fp:") and f"&lt;secret {mask[8:-1]}&gt;" in html


def test_errors_are_pages_or_json(client: Any) -> None:
    assert client.get("/events/999").status_code == 404
    assert client.get("/api/events/999").json()["status"] == 404
    r = client.get("/?since=not a ref at all")
    assert r.status_code == 400 and "REF" in r.text
    assert client.get("/?before=x").status_code == 400
    assert client.get("/nowhere").status_code == 404


# -- paging --------------------------------------------------------------------------


@pytest.fixture
def long_store(tmp_path: Path) -> Iterator[Any]:
    from ledger import SqliteConfigStore

    store = SqliteConfigStore(tmp_path / "long.db", synchronous="NORMAL")

    async def fill() -> None:
        for n in range(1, 121):
            await store.edit({("server", "port"): 2000 + n}, actor="ann" if n % 3 else "cy",
                             reason=f"change {n}")

    asyncio.run(fill())
    yield store
    store.ledger.close()


def test_keyset_pages_by_seq(long_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    c = make_client(_app(long_store))
    auth = {"Authorization": f"Bearer {BEARER}"}
    seen: list[int] = []
    url = "/api/log?limit=50"
    while url:
        page = c.get(url, headers=auth).json()
        seen += [e["seq"] for e in page["events"]]
        url = f"/api/log?limit=50&before={page['next_before']}" if page["next_before"] else ""
    assert seen == list(range(120, 0, -1))
    # a filter pages the same way
    cy = c.get("/api/log?actor=cy&limit=10", headers=auth).json()
    assert [e["seq"] for e in cy["events"]] == list(range(120, 90, -3))
    nxt = c.get(f"/api/log?actor=cy&limit=10&before={cy['next_before']}", headers=auth).json()
    assert nxt["events"][0]["seq"] == 90
    # a filter that matches nothing stops after the scan budget and says where
    monkeypatch.setattr(lib, "SCAN_BUDGET", 25)
    none = c.get("/api/log?actor=nobody", headers=auth).json()
    assert none["events"] == [] and none["next_before"] == 96
    html = c.get("/?actor=nobody", headers=auth).text
    assert "older events were not searched yet" in html and "before=96" in html
    # time bounds are seq bounds
    span = c.get("/api/log?since=100&until=103", headers=auth).json()
    assert [e["seq"] for e in span["events"]] == [103, 102, 101]


# -- mounted under a prefix ----------------------------------------------------------


def test_mounted_under_a_prefix(store: Any) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    audit = _app(store)
    gateway = Starlette(routes=[Mount("/audit", app=audit)])
    c = make_client(gateway)
    r = c.get("/audit/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/audit/login"
    r = c.post("/audit/login", data={"token": audit.state.auth.issue_login_token("x")},
               follow_redirects=False)
    assert r.headers["location"] == "/audit/" and "path=/audit;" in r.headers["set-cookie"].lower()
    html = c.get("/audit/").text
    assert 'href="/audit/events/1"' in html and 'src="/audit/static/app.js"' in html
    assert c.get("/audit/static/app.js").status_code == 200


# -- serve -----------------------------------------------------------------------------


def test_serve_without_the_web_extra_says_what_to_install(
        demo: Demo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from ledger.cli import run

    for name in [m for m in sys.modules if m == "ledger.web" or m.startswith("ledger.web.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [m for m in sys.modules if m == "starlette" or m.startswith("starlette.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert run(["--db", str(demo.db), "serve"]) == 1
    assert "pip install 'moltis-config-ledger[web]'" in capsys.readouterr().err


# -- live updates through a real server ----------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_live_updates_by_server_sent_events(kind: str, tmp_path: Path) -> None:
    import httpx

    from ledger.web.serve import in_thread
    from tests.conftest import make_factory

    if kind == "sqlite":
        from ledger import SqliteConfigStore

        server_store = SqliteConfigStore(tmp_path / "live.db")
        writer = SqliteConfigStore(tmp_path / "live.db")
    else:
        from ledger.stores.postgres_store import PostgresConfigStore

        server_store = make_factory("postgres", tmp_path)()
        writer = PostgresConfigStore(server_store.pg.dsn, schema=server_store.pg.schema)
    asyncio.run(writer.edit({("server", "port"): 1000}, actor="ann", reason="first"))
    app = _app(server_store, poll_interval=0.05)
    try:
        with in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            headers = {"Authorization": f"Bearer {BEARER}"}
            with http.stream("GET", "/stream?after=1&actor=ann", headers=headers) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                asyncio.run(writer.edit({("server", "port"): 1001}, actor="bob",
                                        reason="filtered out"))
                asyncio.run(writer.edit({("server", "port"): 1002}, actor="ann",
                                        reason="<b>live</b>\x1b"))
                got = _first_event(r.iter_lines())
        assert got["id"] == "3"
        data = json.loads(got["data"])
        assert (data["seq"], data["actor"], data["reason"]) == (3, "ann", "<b>live</b>\x1b")
        assert data["display"]["reason"] == "<b>live</b>\\x1b"
        assert data["display"]["summary"] == "set server.port = 1002"
    finally:
        writer.ledger.close()
        server_store.ledger.close()


def _first_event(lines: Iterator[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields.get("event") == "ledger":
                return fields
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value.lstrip(" ")
    raise AssertionError("the stream ended without an event")
