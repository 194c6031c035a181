"""A key path is printed one way in every human output, with a key's hidden characters
escaped as everything else shows them (`\\x1b`, `\\x9b`, `\\u202e`), and whatever a
command printed reads back with `get`/`set` (review r16: `log`/`blame` wrote ESC as
`\\u001b` and a C1 or bidi character as `\\x9b`/`\\u202e`, which `get` refused as "Invalid
\\escape"). What the ledger stores keeps the JSON form every release reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from ledger.cli import cli
from ledger.core.escape import escape
from ledger.core.keypaths import format_path, parse_path, stored_path
from ledger.errors import InvalidPathError

keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@given(st.lists(keys, min_size=1, max_size=4))
def test_every_printed_path_reads_back_and_shows_nothing_hidden(path: list[str]) -> None:
    p = tuple(path)
    text = format_path(p)
    assert escape(text) == text  # nothing in it drives a terminal; shown as it is
    assert parse_path(text) == p
    assert parse_path(stored_path(p)) == p


def test_the_stored_form_is_jsons_as_before() -> None:
    p = ("mcp", "servers", "srv\x1b[2Jx", "a\u202e")
    assert stored_path(p) == 'mcp.servers."srv\\u001b[2Jx"."a\u202e"'
    assert format_path(p) == 'mcp.servers."srv\\x1b[2Jx"."a\\u202e"'
    # a JSON surrogate pair, as json.dumps(ensure_ascii=True) writes one
    assert parse_path('a."\\ud83d\\ude00"') == ("a", "\U0001f600")


@pytest.mark.parametrize(("text", "message"), [
    ('a."\\q"', "is not an escape"), ('a."\\x1"', "is not an escape"),
    ('a."\\U00110000"', "beyond Unicode"), ('a."x', "unterminated")])
def test_a_bad_escape_names_the_fix(text: str, message: str) -> None:
    with pytest.raises(InvalidPathError, match=message):
        parse_path(text)


def test_what_blame_prints_get_reads(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "moltis.toml").write_text(
        '[mcp.servers."srv\\u001b[2J\\u009b\\u202ex"]\ncommand = "npx"\n', encoding="utf-8")
    env = {"MOLTIS_CONFIG_DIR": str(config), "MOLTIS_DATA_DIR": str(tmp_path / "data"),
           "MOLTIS_LEDGER_KEY_FILE": str(tmp_path / "ledger.key")}
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate"], env=env).exit_code == 0
    blamed = json.loads(runner.invoke(cli, ["--json", "blame", "mcp"], env=env).stdout)
    printed = next(e["path"] for e in blamed["entries"] if e["path"].endswith(".command"))
    assert printed == 'mcp.servers."srv\\x1b[2J\\x9b\\u202ex".command'
    got = runner.invoke(cli, ["get", printed], env=env)
    assert (got.exit_code, got.stdout.strip()) == (0, "npx"), got.output
    done = runner.invoke(cli, ["set", printed, "uvx", "--reason", "pasted"], env=env)
    assert done.exit_code == 0, done.output
    got = runner.invoke(cli, ["--json", "get", "mcp.servers"], env=env)
    assert json.loads(got.stdout)["value"] == {"srv\x1b[2J\x9b\u202ex": {"command": "uvx"}}
