"""The audit view under attack (review findings): caching of error pages, oversized
numbers, the bearer token file's permissions, expiring login tokens and idle sessions.
Real SQLite files, the real CLI in process, starlette's TestClient; no mocks, no sleeps
(the auth object takes a clock)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[dev]'")

from click.testing import CliRunner

from ledger.cli import run
from ledger.web import Auth, create_app
from tests.operator import Site, make_site
from tests.web_helpers import OPERATOR, Demo, csrf_of, login, make_client, make_demo

HUGE = "9" * 5000  # beyond Python's int-string digit limit (4300)
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options",
                    "referrer-policy")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(tmp_path_factory.mktemp("web-hardening-demo"))


@pytest.fixture
def store(demo: Demo) -> Iterator[Any]:
    s = demo.store()
    yield s
    with contextlib.suppress(Exception):
        s.ledger.close()


def _client(app: Any, **kw: Any) -> Any:
    c = make_client(app, **kw)
    login(c, app.state.auth.issue_login_token(OPERATOR))
    return c


def _assert_hardened(r: Any, where: str) -> None:
    for name in SECURITY_HEADERS:
        assert name in r.headers, (where, r.status_code, dict(r.headers))
    assert r.headers["cache-control"] == "no-store", (where, dict(r.headers))


# -- 1. caching is decided by the response, not by the path --------------------------


def test_static_404_is_not_cacheable_and_shows_no_session_data(store: Any) -> None:
    c = _client(create_app(store))
    page = c.get("/").text
    csrf = csrf_of(page)
    r = c.get("/static/nope")
    assert r.status_code == 404
    _assert_hardened(r, "/static/nope")
    assert csrf not in r.text and 'name="csrf"' not in r.text
    assert OPERATOR not in r.text
    # a path that merely contains /static/ is an ordinary page: not cacheable either
    for url in ("/x/static/nope", "/api/static/nope", "/events/static/1"):
        r = c.get(url)
        assert r.status_code == 404, url
        _assert_hardened(r, url)
    # a real static file is still cacheable (and carries the security headers)
    r = c.get("/static/app.js")
    assert r.status_code == 200 and r.headers["cache-control"] == "max-age=300"
    assert "content-security-policy" in r.headers
    # a wrong method on a static file is an error, not a cacheable response
    r = c.post("/static/app.js")
    assert r.status_code >= 400
    _assert_hardened(r, "POST /static/app.js")


# -- 2. oversized numbers are a 400; every error carries the headers ----------------


def test_oversized_integers_are_a_400_with_the_security_headers(store: Any) -> None:
    c = _client(create_app(store), raise_server_exceptions=False)
    for url in (f"/api/log?limit={HUGE}", f"/api/log?before={HUGE}", f"/?limit={HUGE}",
                f"/?before={HUGE}", f"/api/events/{HUGE}", f"/events/{HUGE}",
                f"/config?at={HUGE}", f"/api/show?at={HUGE}", f"/api/diff?from=-{HUGE}",
                f"/blame?at={HUGE}", "/api/log?limit=" + "9" * 19):
        r = c.get(url)
        assert r.status_code in (400, 404), (url[:40], r.status_code)
        _assert_hardened(r, url[:40])
    r = c.get(f"/api/log?limit={HUGE}")
    assert r.status_code == 400
    assert "limit" in r.json()["error"] and "digits" in r.json()["error"]
    r = c.get("/stream", headers={"Last-Event-ID": HUGE})
    assert r.status_code == 400
    _assert_hardened(r, "Last-Event-ID")
    # ordinary numbers still work
    assert c.get("/api/log?limit=2&before=7").json()["next_before"] is not None


def test_the_middleware_answers_any_exception_with_headers() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ledger.web.http import SecurityHeaders

    async def boom(_request: Request) -> Response:
        raise RuntimeError("unexpected")

    app = Starlette(routes=[Route("/boom", boom)], middleware=[Middleware(SecurityHeaders)])
    r = make_client(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == 500
    _assert_hardened(r, "/boom")
    assert "unexpected" not in r.text
    # and the exception still reaches the server (logged, raised in tests)
    with pytest.raises(RuntimeError, match="unexpected"):
        make_client(app).get("/boom")


def test_int_param_bounds() -> None:
    from ledger.web.http import HttpError, int_param

    assert int_param({"n": " 42 "}, "n") == 42
    assert int_param({}, "n", 7) == 7
    for bad in (HUGE, "9" * 19, "-1", "1e3", "٣", "0x10"):
        with pytest.raises(HttpError) as err:
            int_param({"n": bad}, "n")
        assert err.value.status == 400 and "n must be" in str(err.value)
    with pytest.raises(HttpError, match="≥ 1"):
        int_param({"n": "0"}, "n", lo=1)


# -- 3. the bearer token file must be private -----------------------------------------


def _serve(*args: str) -> tuple[int | None, str]:
    """`moltis-ledger serve ARGS` in process, on a port already taken: serve stops
    (uvicorn cannot bind) right after it has read the token file and printed the URL."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    code: int | None = None
    try:
        with CliRunner().isolation() as streams:
            try:
                code = run(["serve", "--port", str(busy.getsockname()[1]), *args])
            except SystemExit as stop:  # uvicorn cannot bind: it exits
                code = None if stop.code is None else int(stop.code)
            sys.stdout.flush()
            sys.stderr.flush()
            said = (streams[0].getvalue() + streams[1].getvalue()).decode()
    finally:
        busy.close()
    return code, said


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = make_site(tmp_path)  # MOLTIS_CONFIG_DIR/DATA_DIR point into tmp_path
    site.ok("migrate")
    return site


def _token_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "secrets" / "web.token"
    path.parent.mkdir(exist_ok=True)
    path.write_text("bearer-token-for-scripts-0123456789\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=oct)
def test_serve_refuses_a_token_file_others_can_use(site: Site, tmp_path: Path,
                                                   mode: int) -> None:
    path = _token_file(tmp_path, mode)
    code, said = _serve("--token-file", str(path))
    assert code == 1, said
    assert str(path) in said and f"chmod 600 {path}" in said, said
    assert f"{mode:04o}" in said
    assert "log in as" not in said
    path.chmod(0o600)  # the fix it names works
    _code, said = _serve("--token-file", str(path))
    assert "log in as" in said and "chmod" not in said, said


def test_serve_refuses_a_symlinked_token_file(site: Site, tmp_path: Path) -> None:
    target = _token_file(tmp_path, 0o600)
    link = tmp_path / "link.token"
    link.symlink_to(target)
    code, said = _serve("--token-file", str(link))
    assert code == 1 and str(link) in said and "symlink" in said, said
    assert "log in as" not in said


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a file to another user needs root")
def test_serve_refuses_a_token_file_owned_by_another_user(site: Site, tmp_path: Path) -> None:
    path = _token_file(tmp_path, 0o600)
    os.chown(path, 65534, 65534)
    code, said = _serve("--token-file", str(path))
    assert code == 1 and str(path) in said and "owned by" in said, said


# -- 4. login tokens expire; sessions expire when idle ------------------------------


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_tokens_expire() -> None:
    clock = Clock()
    auth = Auth(login_seconds=900, clock=clock)
    old = auth.issue_login_token("alice")
    clock.now += 600
    fresh = auth.issue_login_token("bob")
    clock.now += 300  # `old` is exactly 900 s old: expired
    assert auth.login(old) is None
    found = auth.login(fresh)  # 300 s old
    assert found is not None and found[1].operator == "bob"
    clock.now += 601
    late = auth.issue_login_token("carol")
    clock.now += 900
    assert auth.login(late) is None


def test_sessions_expire_when_idle_and_at_their_end() -> None:
    clock = Clock()
    auth = Auth(session_seconds=3600, idle_seconds=600, clock=clock)
    cookie, session = auth.login(auth.issue_login_token("alice")) or ("", None)
    assert session is not None
    for _ in range(5):  # used every 9 minutes: kept
        clock.now += 540
        assert auth.session(cookie) is session
    clock.now += 600  # 10 minutes without a request: gone
    assert auth.session(cookie) is None
    clock.now += 1
    assert auth.session(cookie) is None  # and it does not come back
    # in use all along, a session still ends at session_seconds
    cookie, session = auth.login(auth.issue_login_token("bob")) or ("", None)
    for _ in range(6):
        clock.now += 590
        assert auth.session(cookie) is session
    clock.now += 60  # 3600 s after the login
    assert auth.session(cookie) is None


def test_expired_token_and_idle_session_in_the_browser(store: Any) -> None:
    clock = Clock()
    app = create_app(store, auth=Auth(login_seconds=900, idle_seconds=600, clock=clock))
    token = app.state.auth.issue_login_token("alice")
    clock.now += 901
    c = make_client(app)
    r = c.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 401
    assert c.get("/", follow_redirects=False).status_code == 303
    login(c, app.state.auth.issue_login_token("alice"))
    assert c.get("/", follow_redirects=False).status_code == 200
    clock.now += 601
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_serve_says_the_link_is_one_time_and_when_it_expires(site: Site) -> None:
    _code, said = _serve("--login-ttl", "5")
    line = next(x for x in said.splitlines() if "log in as" in x)
    assert "one-time" in line and "expires" in line and "5 min" in line, line
    _code, said = _serve()
    assert "15 min" in next(x for x in said.splitlines() if "log in as" in x)
    _code, said = _serve("--login-ttl", "0")
    assert _code == 2 and "--login-ttl" in said


def test_serve_json_names_the_expiry(site: Site) -> None:
    _code, said = _serve("--json", "--login-ttl", "7")
    doc = json.loads(next(x for x in said.splitlines() if x.startswith("{")))
    assert doc["login_ttl_seconds"] == 420 and doc["login_expires"].endswith("Z")
