"""Shared by the web view's tests: the demo ledger (plus a hostile reason and a config
secret), a logged-in TestClient, and the values that must never be served."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.cli.demo import ROTATED_KEY, run_demo
from ledger.engine.vault import KeySource

# Every plaintext secret the demo ledger holds: none may appear in any page or JSON.
CONFIG_SECRET = "hunter2-web-view-never-shows-this"
SECRETS = ["sk-ant-demo-0000-not-a-real-key", "sk-demo-1111-not-a-real-key", ROTATED_KEY,
           CONFIG_SECRET]
HOSTILE_REASON = ("<script>window.__xss = 1</script><img src=x onerror=\"window.__xss=2\"> "
                  "colour \x1b[31mred\x1b[0m and \u202ereversed\u202c")
OPERATOR = "web-operator"
# Where the demo's events land (`moltis-ledger demo`: 1 import, 2 a hand edit of
# moltis.toml imported as an event, 3 alice's port change, 4 bob's timeout, 5 the
# rollback, 6 the key rotation; then make_demo's 7 and 8). Named, so a demo step added
# later moves them in one place.
PORT_SEQ = 3
ROLLBACK_SEQ = 5
ROTATE_SEQ = 6
SECRET_SEQ = 7
HOSTILE_SEQ = 8


@dataclass
class Demo:
    root: Path
    db: Path
    key_file: Path

    def keys(self) -> KeySource:
        return KeySource(key_file=self.key_file, env={})

    def store(self, **kw: Any) -> Any:
        from ledger import SqliteConfigStore

        return SqliteConfigStore(self.db, keys=self.keys(), **kw)


def make_demo(root: Path) -> Demo:
    """`moltis-ledger demo --dir ROOT` (seq 1..6), then SECRET_SEQ: a config secret set by
    mallory, HOSTILE_SEQ: a change whose reason holds markup and control characters."""
    import asyncio

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_demo(root)
    assert code == 0, (out.getvalue()[-1500:] + err.getvalue()[-1500:])
    demo = Demo(root, root / "data" / "moltis.db", root / "config" / "ledger.key")
    store = demo.store()

    async def more() -> None:
        await store.edit({("env", "WEB_TOKEN"): CONFIG_SECRET}, actor="mallory",
                         reason="a token for the hooks", source="api")
        await store.edit({("identity", "name"): "Atlas <b>bold</b>"}, actor="mallory",
                         reason=HOSTILE_REASON, source="api")

    asyncio.run(more())
    assert store.ledger.head_state().seq == HOSTILE_SEQ, "the demo's events moved"
    store.ledger.close()
    return demo


def make_client(app: Any, **kw: Any) -> Any:
    """starlette's TestClient (with starlette >= 1 it prefers httpx2; httpx works)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx`")
        from starlette.testclient import TestClient
    return TestClient(app, base_url="http://127.0.0.1", **kw)


def login(client: Any, token: str) -> None:
    response = client.post("/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def assert_no_secret(text: str, where: str) -> None:
    for value in SECRETS:
        assert value not in text, f"a secret value appears in {where}"
