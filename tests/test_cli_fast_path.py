"""`moltis-ledger get PATH` runs through an argv fast path without click (issue 16's
start-up figure i16a). Only the parsing differs: these tests run the same command
lines through click (`app.run`) and through the fast path (`fast.run_fast`) and compare
exit code, stdout and stderr byte for byte; anything the fast path does not know goes
to click. Whether the fast path loads click, rich or asyncio is checked by
`sys.modules` in a fresh interpreter, never by time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import ledger.cli
from ledger.cli import app, fast
from tests.cli_probe import probe

SECRET = "sk-FAST-PATH-SECRET-7d3c9a"


@pytest.fixture
def site(tmp_path: Path, fixtures_dir: Path) -> Path:
    """The docs example plus a provider secret, migrated into the default ledger."""
    config = Path(os.environ["MOLTIS_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    toml = (fixtures_dir / "docs-example.moltis.toml").read_text(encoding="utf-8")
    toml += f'\n[providers.openai]\nenabled = true\napi_key = "{SECRET}"\n'
    (config / "moltis.toml").write_text(toml, encoding="utf-8")
    assert app.run(["migrate", "--actor", "installer"]) == 0
    return config


def both(capfd: pytest.CaptureFixture[str], args: list[str]) -> None:
    """Runs `args` through click and through the fast path: the same result."""
    capfd.readouterr()
    by_click = app.run(args)
    click_out, click_err = capfd.readouterr()
    by_fast = fast.run_fast(args)
    fast_out, fast_err = capfd.readouterr()
    assert by_fast is not None, f"{args}: the fast path handed this to click"
    assert (by_fast, fast_out, fast_err) == (by_click, click_out, click_err), args
    assert SECRET not in click_out + click_err


CASES = [
    ["get", "server.port"],
    ["get", "identity.name"],
    ["get", "server"],  # a table, as JSON
    ["--json", "get", "server.port"],
    ["get", "server.port", "--json"],
    ["get", "--json", "server.port"],
    ["get", "providers.openai.api_key"],  # masked
    ["--json", "get", "providers.openai.api_key"],
    ["get", "server.prot"],  # unknown key, with the nearest known one suggested
    ["--json", "get", "server.prot"],
    ["get", "tools.exec.sandbox.image"],  # a known key that is not set: exit 1
    ["get", "keys:openai.apiKey"],
    ["get", "server..port"],  # a malformed path
    ["--json", "get", "server..port"],
    ["--read-only", "get", "server.port"],
    ["--db", "{data}/moltis.db", "get", "server.port"],
    ["--db={data}/moltis.db", "--json", "get", "server.port"],
    ["--data-dir", "{data}", "--config-dir", "{config}", "get", "server.port"],
    ["--config-dir={config}", "--data-dir={data}", "get", "server.port"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_get_by_the_fast_path_is_byte_for_byte_the_click_command(
        site: Path, capfd: pytest.CaptureFixture[str], args: list[str]) -> None:
    where = {"data": os.environ["MOLTIS_DATA_DIR"], "config": str(site)}
    both(capfd, [a.format(**where) for a in args])


def test_the_same_for_no_ledger_and_a_ledger_without_tables(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    both(capfd, ["get", "server.port"])  # nothing migrated: "no ledger at ..."
    both(capfd, ["--json", "get", "server.port"])
    both(capfd, ["--db", str(tmp_path / "elsewhere.db"), "get", "server.port"])
    (tmp_path / "empty.db").write_bytes(b"")
    both(capfd, ["--db", str(tmp_path / "empty.db"), "--json", "get", "server.port"])


def test_the_same_when_the_gateway_reads_another_store(
        site: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warning that the gateway does not read this ledger (stderr) is the same."""
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "file")
    both(capfd, ["get", "server.port"])


def test_a_pending_hand_edit_is_imported_first_by_either_path(
        site: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The trust and sync steps before the read are the command body's, not the
    parser's: a hand edit of moltis.toml is imported before the fast path answers."""
    capfd.readouterr()
    assert app.run(["log", "--limit", "1", "--json"]) == 0
    before = json.loads(capfd.readouterr().out)["head_seq"]
    config = site / "moltis.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "port = 13131", "port = 14141"), encoding="utf-8")
    old = config.stat().st_mtime - 5  # settled: the import waits for a quiet file
    os.utime(config, (old, old))
    capfd.readouterr()
    assert fast.run_fast(["get", "server.port"]) == 0
    out, _ = capfd.readouterr()
    assert out == "14141\n"
    assert app.run(["log", "--limit", "1", "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["head_seq"] == before + 1


NOT_FAST = [
    ["get"],
    ["get", "-h"],
    ["-h", "get", "server.port"],
    ["get", "server.port", "--help"],
    ["get", "server.port", "extra"],
    ["get", "server.port", "--bogus"],
    ["--bogus", "get", "server.port"],
    ["get", "--at", "1", "server.port"],
    ["get", "server.port", "--effective"],
    ["get", "-v", "server.port"],
    ["-v", "get", "server.port"],
    ["get", "--", "server.port"],
    ["get", "-1"],
    ["--db", "get", "server.port"],  # click reads `get` as the value of --db
    ["--db", "--json", "get", "server.port"],
    ["--db"],
    ["--json=yes", "get", "server.port"],
    ["show"],
    ["set", "server.port", "1"],
    ["--version"],
    [],
]


@pytest.mark.parametrize("args", NOT_FAST, ids=[" ".join(c) or "(none)" for c in NOT_FAST])
def test_anything_else_goes_to_click(args: list[str]) -> None:
    assert fast.parse(args) is None


def test_click_parses_what_the_fast_path_cannot(
        site: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`main` hands these to click: its usage errors and help, unchanged."""
    for args in (["get", "server.port", "--bogus"], ["get", "-h"], ["get"],
                 ["--config-dir", str(site / "moltis.toml"), "get", "server.port"]):
        capfd.readouterr()
        assert fast.run_fast(args) is None, args
        by_click = app.run(args)
        click_out, click_err = capfd.readouterr()
        with pytest.raises(SystemExit) as stop:
            ledger.cli.main(args)
        out, err = capfd.readouterr()
        assert (stop.value.code, out, err) == (by_click, click_out, click_err), args
        assert by_click != 0 or args == ["get", "-h"]


def test_get_through_main_loads_neither_click_nor_rich_nor_asyncio(site: Path) -> None:
    code, modules, output = probe("get", "server.port")
    assert (code, output) == (0, "13131")
    loaded = [m for m in ("click", "rich", "asyncio", "cryptography", "tomlkit",
                          "ledger.cli.app", "ledger.cli.config_cmds", "ledger.schema",
                          "ledger.typed.head_cache") if m in modules]
    assert not loaded, f"`get` imported {loaded}"
    # and a masked secret prints without them too
    code, modules, output = probe("get", "providers.openai.api_key")
    assert code == 0 and output.startswith("<secret fp:") and SECRET not in output
    assert not [m for m in ("click", "rich", "asyncio") if m in modules]
