"""The web view's verify page shows what `verify` and `/api/verify` say (a gap the last
closing note listed): the seq the head MAC covers, the signed seq, and verify's notes,
all escaped. The real app in process (starlette's TestClient) over a real SQLite demo
ledger, as the other web tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[dev]'")

from markupsafe import escape

from ledger.web import create_app
from tests.web_helpers import OPERATOR, login, make_client, make_demo


def cell(page: str, ident: str) -> str:
    found = re.search(rf'id="{ident}"[^>]*>([^<]*)<', page)
    assert found, f"no #{ident} on the verify page"
    return found.group(1)


def test_the_verify_page_shows_the_maced_and_signed_seqs_and_the_notes(
        tmp_path: Path) -> None:
    # a folder name with markup: verify's notes name files below it, and must arrive
    # escaped, never as markup
    demo = make_demo(tmp_path / 'web<i>x</i>&"q')
    store = demo.store()
    try:
        store.ledger.update_typed(lambda cfg: setattr(cfg.server, "port", 14141),
                                  actor="carol")  # MAC'd now, signed only at close
        lock = Path(f"{demo.db}.lock")
        os.chmod(lock, 0o644)  # a refused queue file: a note of verify's
        app = create_app(store)
        client = make_client(app)
        login(client, app.state.auth.issue_login_token(OPERATOR))
        report = client.get("/api/verify").json()
        assert report["ok"] and report["mac_seq"] is not None
        page = client.get("/verify").text
        assert cell(page, "mac-seq") == str(report["mac_seq"])
        if report["signed_seq"] is not None:
            assert cell(page, "signed-seq") == str(report["signed_seq"])
        notes = [n for n in report["notes"] if str(lock) in n]
        assert notes, report["notes"]
        assert str(escape(str(lock))) in page
        assert "<i>x</i>" not in page  # escaped, never markup
    finally:
        store.ledger.close()
