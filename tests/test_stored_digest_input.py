"""Stored digests and MACs are input: one that is not ASCII (a hand-edited meta row, a
tampered backup manifest) compares as "differs", never as an unexpected TypeError of
`compare_digest`. A malformed `import.config.digest` row means "run the full hand-edit
check", which reads the file again: nothing is lost, and every read command works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from ledger.cli import app
from ledger.core import constant_time

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("a", "b", "same"), [
    ("\u00e9", "\u00e9", True), ("\u00e9", "e", False), ("abc", "abc", True),
    (b"abc", b"abd", False), ("\ud800", "x", False), ("\ud800", "\ud800", True)])
def test_equal_takes_any_text(a: str | bytes, b: str | bytes, same: bool) -> None:
    assert constant_time.equal(a, b) is same  # type: ignore[arg-type]
    assert constant_time.equal(b, a) is same  # type: ignore[arg-type]


def _seed() -> Path:
    config = Path(os.environ["MOLTIS_CONFIG_DIR"])
    config.mkdir(parents=True)
    (config / "moltis.toml").write_text(
        '[server]\nport = 8111\n\n[config]\nbackend = "sqlite"\n', encoding="utf-8")
    (config / "moltis.toml").chmod(0o600)
    assert app.run(["migrate", "--actor", "installer"]) == 0
    db = Path(os.environ["MOLTIS_DATA_DIR"]) / "moltis.db"
    c = apsw.Connection(str(db))
    c.execute("UPDATE ledger_meta SET value = '\u00e9' WHERE key = 'import.config.digest'")
    c.close()
    return db


def test_a_non_ascii_stored_file_digest_is_refused_cleanly(tmp_path: Path) -> None:
    _seed()
    # the fast `get` of `python -m ledger` (a real process: its own start-up path)
    done = subprocess.run([sys.executable, "-m", "ledger", "get", "server.port"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert "unexpected TypeError" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8111"


def test_every_read_command_works_with_a_non_ascii_stored_digest(
        capsys: pytest.CaptureFixture[str]) -> None:
    _seed()
    for args in (["show"], ["check"], ["verify"], ["get", "server.port"]):
        assert app.run(args) == 0, (args, capsys.readouterr())
    assert "TypeError" not in capsys.readouterr().err


@pytest.mark.parametrize("leaves", ["{not json", "5", '{"server.port": 7}'])
def test_check_names_a_damaged_import_record(leaves: str, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    """A damaged record of the file's last import is read as none (review r25): no hand
    edit is taken from it, so `check` says so, naming the row and the way back."""
    import json

    _seed()
    db = Path(os.environ["MOLTIS_DATA_DIR"]) / "moltis.db"
    c = apsw.Connection(str(db))
    c.execute("UPDATE ledger_meta SET value = ? WHERE key = 'import.config.leaves'",
              (leaves,))
    c.close()
    capsys.readouterr()
    assert app.run(["--json", "check"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("import.config.leaves" in w and "moltis-ledger migrate" in w
               for w in warnings), warnings


def test_migrate_records_the_file_again_over_a_damaged_record(
        capsys: pytest.CaptureFixture[str]) -> None:
    """With the record damaged, `migrate` cannot tell the file's changes from the
    ledger's: it imports nothing (no value set in the ledger since is reverted, review
    r26), says so, and records the file as it is, so the next hand edit is imported."""
    import json

    _seed()
    assert app.run(["set", "server.port", "8222"]) == 0  # the file still says 8111
    db = Path(os.environ["MOLTIS_DATA_DIR"]) / "moltis.db"
    c = apsw.Connection(str(db))
    c.execute("UPDATE ledger_meta SET value = '5' WHERE key = 'import.config.leaves'")
    c.close()
    capsys.readouterr()
    assert app.run(["migrate"]) == 0
    said = capsys.readouterr()
    assert "import.config.leaves" in said.out + said.err
    assert app.run(["--json", "get", "server.port"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == 8222
    toml = Path(os.environ["MOLTIS_CONFIG_DIR"]) / "moltis.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("8111", "8333"),
                    encoding="utf-8")
    assert app.run(["--json", "get", "server.port"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == 8333  # a hand edit again


def test_a_key_file_that_appears_after_the_first_migrate_is_imported(
        capsys: pytest.CaptureFixture[str]) -> None:
    """No record of a file, though files were imported before, makes `migrate` keep the
    ledger's own changes as conflicts (review r27: a deleted record reverted them); a
    key file that simply did not exist at the first migrate is still imported whole."""
    import json

    _seed()  # moltis.toml only
    keys = Path(os.environ["MOLTIS_CONFIG_DIR"]) / "provider_keys.json"
    keys.write_text(json.dumps({"openai": {"apiKey": "sk-late-0123456789abcdef"}}),
                    encoding="utf-8")
    keys.chmod(0o600)
    assert app.run(["migrate", "--keep-files"]) == 0
    capsys.readouterr()
    assert app.run(["--json", "providers", "list"]) == 0
    assert "openai" in capsys.readouterr().out
