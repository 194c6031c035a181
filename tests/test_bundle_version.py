"""Bundles carry a format version: a new bundle says which one; a bundle without it is
version 1 (every bundle written before the field); a bundle of a newer version is
refused by verify-bundle and import-bundle, naming the file and the version it needs,
instead of being read by rules that may no longer hold for it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.operator import invoke, make_site


def _bundle(tmp_path: Path) -> Path:
    make_site(tmp_path)
    assert invoke(["migrate"]).code == 0
    target = tmp_path / "ledger.bundle"
    result = invoke(["bundle", "-o", str(target), "--with-secrets"])
    assert result.code == 0, result
    return target


def _with_header(path: Path, **changes: object) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    for name, value in changes.items():
        if value is None:
            header.pop(name, None)
        else:
            header[name] = value
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n", encoding="utf-8")


def test_a_new_bundle_names_its_version(tmp_path: Path) -> None:
    header = json.loads(_bundle(tmp_path).read_text(encoding="utf-8").splitlines()[0])
    assert header["version"] == 1


def test_a_bundle_without_the_version_reads_as_version_1(tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    _with_header(path, version=None)
    assert invoke(["verify-bundle", str(path)]).code == 0
    result = invoke(["--db", str(tmp_path / "copy.db"), "import-bundle", str(path)])
    assert result.code == 0, result


def test_a_bundle_of_a_newer_version_is_refused_naming_the_file_and_version(
        tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    _with_header(path, version=2)
    for args in (["verify-bundle", str(path)],
                 ["--db", str(tmp_path / "copy.db"), "import-bundle", str(path)]):
        result = invoke(args)
        assert result.code != 0, (args, result)
        assert str(path) in result.err and "version 2" in result.err, result.err
        assert "reads bundle versions up to 1" in result.err, result.err


def test_a_malformed_version_is_refused(tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    for bad in ("2", 0, True, 1.5):
        _with_header(path, version=bad)
        result = invoke(["verify-bundle", str(path)])
        assert result.code != 0 and str(path) in result.err and "version" in result.err, \
            (bad, result)
