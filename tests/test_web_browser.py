"""The audit view in a real headless browser: Debian's chromium driven by Playwright.

One server (the demo ledger, rollback allowed) and one browser for the module. Outside
CI these tests skip with a hint when chromium or playwright is missing; under CI=true
they must run (`.ci/run` installs chromium with apt-get).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web_helpers import (
    HOSTILE_REASON,
    HOSTILE_SEQ,
    OPERATOR,
    PORT_SEQ,
    ROLLBACK_SEQ,
    assert_no_secret,
    make_demo,
)

CHROMIUM = os.environ.get("LEDGER_TEST_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.browser


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


if (why := _missing()) is not None and os.environ.get("CI") != "true":
    pytest.skip(f"browser tests need Debian's chromium and playwright: {why}",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ledger.web import create_app
    from ledger.web.serve import in_thread

    demo = make_demo(tmp_path_factory.mktemp("browser-demo"))
    store = demo.store()
    app = create_app(store, allow_rollback=True, poll_interval=0.1)
    with in_thread(app) as url:
        yield {"url": url, "auth": app.state.auth, "store": store}
    store.ledger.close()


@pytest.fixture(scope="module")
def browser(server: dict[str, Any]) -> Iterator[Any]:
    """After the server: Playwright's sync API runs an event loop in this thread, so
    the demo (which uses asyncio.run) must be built first."""
    from playwright.sync_api import sync_playwright

    del server

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def context(browser: Any, server: dict[str, Any]) -> Iterator[Any]:
    """A logged-in browser context: the one-time link, as `serve` prints it."""
    ctx = browser.new_context()
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    token = server["auth"].issue_login_token(OPERATOR)
    page.goto(f"{server['url']}/login#token={token}")
    page.wait_for_url(f"{server['url']}/")
    assert "#token" not in page.url
    page.close()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda err: errors.append(str(err)))
    yield p
    p.close()
    assert not errors, errors


def _rows(page: Any) -> dict[int, str]:
    out = {}
    for row in page.locator("#timeline tbody tr").all():
        out[int(row.get_attribute("data-seq"))] = row.inner_text()
    return out


def test_timeline_shows_the_demo_events(page: Any, server: dict[str, Any]) -> None:
    page.goto(server["url"] + "/")
    rows = _rows(page)
    assert set(rows) >= set(range(1, HOSTILE_SEQ + 1))
    assert "free 13131 for the reverse proxy" in rows[PORT_SEQ] and "alice" in rows[PORT_SEQ]
    assert "set server.port = 8080" in rows[PORT_SEQ]
    assert "rollback" in rows[ROLLBACK_SEQ]
    assert page.locator("header .who").inner_text().startswith(OPERATOR)


def test_open_an_events_diff(page: Any, server: dict[str, Any]) -> None:
    page.goto(server["url"] + "/")
    page.locator(f'#timeline tr[data-seq="{PORT_SEQ}"] td.seq a').click()
    page.wait_for_url(f"**/events/{PORT_SEQ}")
    row = page.locator("table.diff tbody tr")
    assert row.count() == 1
    assert row.inner_text().split("\t") == ["server.port", "changed", "13131", "8080"]


def test_config_as_of_an_earlier_seq(page: Any, server: dict[str, Any]) -> None:
    page.goto(server["url"] + "/config")
    page.fill("input[name=at]", "1")
    page.click("form.filters button")
    page.wait_for_url("**/config?at=1*")
    assert page.locator("h1").inner_text().startswith("Configuration as of seq 1")
    port = page.locator('tr.leaf[data-path="server.port"] td')
    assert port.nth(1).inner_text() == "13131"
    assert port.nth(2).inner_text() == "seq 1"


def test_a_script_reason_is_text(page: Any, server: dict[str, Any]) -> None:
    page.goto(server["url"] + f"/events/{HOSTILE_SEQ}")
    shown = page.locator("td.reason").inner_text()
    assert shown.startswith("<script>window.__xss = 1</script><img src=x onerror=")
    assert "\\x1b[31mred\\x1b[0m" in shown and "\\u202ereversed\\u202c" in shown
    assert page.evaluate("window.__xss") is None
    assert page.locator("main script, main img").count() == 0
    page.goto(server["url"] + "/")
    assert page.evaluate("window.__xss") is None
    assert "<script>window.__xss" in _rows(page)[HOSTILE_SEQ]


def test_no_secret_in_any_page_or_json(page: Any, server: dict[str, Any]) -> None:
    for path in ("/", "/events/5", "/events/6", "/config", "/config?at=6",
                 "/config?effective=1", "/blame", "/providers", "/verify", "/rollback?to=1"):
        page.goto(server["url"] + path, wait_until="domcontentloaded")
        assert_no_secret(page.content(), path)
    for path in ("/api/log", "/api/events/6", "/api/show", "/api/config?effective=1",
                 "/api/providers", "/api/blame"):
        response = page.request.get(server["url"] + path)
        assert response.ok
        assert_no_secret(response.text(), path)
    page.goto(server["url"] + "/providers")
    assert "<secret fp:" in page.locator("table.providers").inner_text()


def test_refused_without_a_session_or_with_a_wrong_csrf(browser: Any, page: Any,
                                                        server: dict[str, Any]) -> None:
    stranger = browser.new_context()
    try:
        p = stranger.new_page()
        p.goto(server["url"] + "/config")
        assert p.url == server["url"] + "/login"
        r = stranger.request.post(server["url"] + "/rollback",
                                  form={"to": "1", "expected_seq": "1", "reason": "x"})
        assert r.status == 401
        assert stranger.request.get(server["url"] + "/api/log").status == 401
    finally:
        stranger.close()
    head = _head(server)
    page.goto(server["url"] + "/rollback?to=1")
    page.evaluate("document.querySelector('#confirm-rollback input[name=csrf]').value = 'forged'")
    page.fill("textarea[name=reason]", "should be refused")
    with page.expect_navigation():
        page.click("#confirm-rollback button")
    assert "CSRF" in page.locator(".problem").inner_text()
    assert _head(server) == head


def _head(server: dict[str, Any]) -> int:
    from ledger.web.library import head_seq

    return head_seq(server["store"])


def test_rollback_dry_run_then_confirm_appears_live(context: Any, page: Any,
                                                     server: dict[str, Any]) -> None:
    timeline = context.new_page()
    timeline.goto(server["url"] + "/")
    timeline.wait_for_function("document.getElementById('live-status').textContent"
                               ".startsWith('Live:')")
    head = _head(server)
    page.goto(server["url"] + "/events/3")
    page.click("text=Roll back to before this event")
    page.wait_for_url("**/rollback?to=2")
    diff = page.locator("table.diff tbody tr")
    assert diff.count() >= 1
    assert _head(server) == head  # the dry run appended nothing
    page.fill("textarea[name=reason]", "undo from the browser <i>now</i>")
    with page.expect_navigation():
        page.click("#confirm-rollback button")
    assert page.url.endswith(f"/events/{head + 1}?rolled_back=1")
    assert "rollback" in page.locator("table.meta").inner_text()
    # the first tab, never reloaded, got the row by server-sent events
    row = timeline.locator(f'#timeline tbody tr[data-seq="{head + 1}"]')
    row.wait_for()
    text = row.inner_text()
    assert OPERATOR in text and "undo from the browser <i>now</i>" in text
    assert timeline.locator("#timeline tbody tr").first.get_attribute("data-seq") == str(head + 1)
    timeline.close()


def test_hostile_reason_constant_is_what_the_page_shows() -> None:
    assert "<script>" in HOSTILE_REASON and "\x1b" in HOSTILE_REASON
