"""import-bundle refuses a bundle sealed with another ledger key before it opens the
target (closing note 5, "Noticed"): the key check ran only once the target was opened,
and so created, leaving an empty database (and its directory) behind."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.operator import invoke, make_site


def _sealed_bundle(tmp_path: Path) -> Path:
    make_site(tmp_path)  # provider_keys.json: secrets the ledger seals
    assert invoke(["migrate"]).code == 0
    target = tmp_path / "ledger.bundle"
    assert invoke(["bundle", "-o", str(target), "--with-secrets"]).code == 0
    return target


def test_a_bundle_sealed_with_another_key_creates_no_database(tmp_path, monkeypatch):
    bundle = _sealed_bundle(tmp_path)
    monkeypatch.setenv("MOLTIS_LEDGER_KEY", secrets.token_hex(32))
    target = tmp_path / "new" / "moltis.db"
    result = invoke(["--db", str(target), "import-bundle", str(bundle)])
    assert result.code == 1, result
    assert str(bundle) in result.err and "another ledger key" in result.err, result.err
    assert "nothing was imported" in result.err, result.err
    assert not target.parent.exists(), sorted(p.name for p in target.parent.iterdir())


def test_a_bundle_sealed_with_the_key_at_hand_still_imports(tmp_path):
    bundle = _sealed_bundle(tmp_path)
    target = tmp_path / "new" / "moltis.db"
    result = invoke(["--db", str(target), "import-bundle", str(bundle)])
    assert result.code == 0, result
    assert invoke(["--db", str(target), "verify"]).code == 0
