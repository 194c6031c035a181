"""Messages that named the wrong thing (closing note 5, "Noticed"): the size limit of
every file read back said "configuration file" for a key file or a bundle, and an
empty `--db=` said "disk I/O error" instead of naming the option."""

from __future__ import annotations

import os
from pathlib import Path

from ledger.ops.bundle import MAX_BUNDLE_BYTES
from tests.operator import invoke


def _sparse(path: Path, size: int) -> Path:
    """A file of `size` bytes that takes no room (the size is judged before any read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_an_oversized_key_file_is_named_a_key_file(tmp_path, monkeypatch):
    key = _sparse(tmp_path / "keys" / "ledger.key", 8192)
    os.chmod(key, 0o600)
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(key))
    result = invoke(["set", "server.port", "8100"])
    assert result.code == 1, result
    assert f"{key}: 8,192 bytes is too large for a ledger key file" in result.err, result.err
    assert "configuration file" not in result.err


def test_an_oversized_pinned_key_file_is_named_a_pinned_key_file(tmp_path):
    assert invoke(["set", "server.port", "8101"]).code == 0
    pinned = _sparse(tmp_path / "pinned.pub", 8192)
    result = invoke(["verify", "--pinned-key-file", str(pinned)])
    assert result.code == 1, result
    assert "too large for a pinned key file" in result.err, result.err


def test_an_oversized_bundle_is_named_a_bundle(tmp_path):
    bundle = _sparse(tmp_path / "huge.bundle", MAX_BUNDLE_BYTES + 1)
    result = invoke(["verify-bundle", str(bundle)])
    assert result.code != 0, result
    assert f"{bundle}: {MAX_BUNDLE_BYTES + 1:,} bytes is too large for a bundle" in result.err, (
        result.err)


def test_an_empty_db_option_names_the_option(tmp_path):
    for args in (["--db=", "get", "server.port"], ["--db", "", "set", "server.port", "1"]):
        result = invoke(args)
        assert result.code != 0, result
        assert "--db" in result.err and "empty" in result.err, result.err
        assert "disk I/O" not in result.err, result.err
