"""A TOML date or time is a table to Moltis's serde (toml's `Datetime`): Moltis refuses
it for any typed field, and passes it on as a table in a free-form value; the ledger
keeps its text (JSON has no date). `check --file` says which, so a file Moltis would not
load is never reported clean."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ledger.cli import cli

TOML = """\
mystery = 2024-05-01

[identity]
name = 1979-05-27

[tools.exec]
allowlist = ["ls", 07:32:00]

[channels.telegram.bot1]
since = 2024-05-01T10:00:00Z
"""


def test_check_names_each_date_and_what_moltis_makes_of_it(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    path = config / "moltis.toml"
    path.write_text(TOML, encoding="utf-8")
    env = {"MOLTIS_CONFIG_DIR": str(config), "MOLTIS_DATA_DIR": str(tmp_path / "data"),
           "MOLTIS_LEDGER_KEY_FILE": str(tmp_path / "ledger.key")}
    runner = CliRunner()
    got = runner.invoke(cli, ["--json", "check", "--file", str(path)], env=env)
    assert got.exit_code == 1, got.output  # Moltis would not load this file
    dates = {p["path"]: p for p in json.loads(got.stdout)["problems"]
             if p["kind"] == "toml-date"}
    assert {k: v["severity"] for k, v in dates.items()} == {
        "identity.name": "error", "tools.exec.allowlist.1": "error",
        "channels.telegram.bot1.since": "warning"}, dates
    assert "quote it" in dates["identity.name"]["message"]
    # lenient as before: the ledger keeps the text (and check on the ledger sees text)
    assert runner.invoke(cli, ["migrate"], env=env).exit_code == 0
    got = runner.invoke(cli, ["--json", "get", "identity.name"], env=env)
    assert json.loads(got.stdout)["value"] == "1979-05-27"
