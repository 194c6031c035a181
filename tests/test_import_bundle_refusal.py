"""import-bundle checks the bundle before it opens the target database: a refused
bundle (a newer version, a malformed line, a broken chain) leaves no file behind where
there was no database, and an existing database byte-identical. Before, the target was
opened (and so created, with its WAL files and directory) first, and a refused import
left an empty ledger behind (noticed by r5-trust)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.operator import invoke, make_site


def _bundle(tmp_path: Path) -> Path:
    make_site(tmp_path)
    assert invoke(["migrate"]).code == 0
    assert invoke(["set", "server.port", "2000"]).code == 0
    target = tmp_path / "ledger.bundle"
    assert invoke(["bundle", "-o", str(target)]).code == 0
    return target


def _spoil(path: Path, how: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    if how == "newer":
        header = json.loads(lines[0])
        header["version"] = 2
        lines[0] = json.dumps(header)
    elif how == "malformed":
        lines.append("{not json")
    else:  # the last event's payload changed: its hash no longer matches
        at = max(n for n, line in enumerate(lines) if '"seq"' in line)
        event = json.loads(lines[at])
        assert "2000" in event["payload"]
        event["payload"] = event["payload"].replace("2000", "6666")
        lines[at] = json.dumps(event)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("how", ["newer", "malformed", "chain"])
def test_a_refused_bundle_creates_no_database(tmp_path: Path, how: str) -> None:
    bundle = _bundle(tmp_path)
    _spoil(bundle, how)
    target = tmp_path / "new" / "moltis.db"
    result = invoke(["--db", str(target), "import-bundle", str(bundle)])
    assert result.code != 0, result
    assert str(bundle) in result.err, result.err
    assert not target.parent.exists(), sorted(p.name for p in target.parent.iterdir())


def test_a_refused_bundle_leaves_an_existing_database_as_it_was(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    _spoil(bundle, "newer")
    target = tmp_path / "other" / "moltis.db"
    good = tmp_path / "good.bundle"
    assert invoke(["bundle", "-o", str(good), "--with-secrets"]).code == 0
    assert invoke(["--db", str(target), "import-bundle", str(good)]).code == 0
    before = {p.name: p.read_bytes() for p in target.parent.iterdir()}
    result = invoke(["--db", str(target), "import-bundle", str(bundle)])
    assert result.code != 0 and "version 2" in result.err, result
    assert {p.name: p.read_bytes() for p in target.parent.iterdir()} == before
