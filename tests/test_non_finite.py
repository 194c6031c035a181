"""inf and nan in a TOML or YAML config file, read as Moltis reads them where the ledger
can hold that (review r11): in a free-form value (a channel account: serde_json's
`Value`, where a non-finite number is null) or an unknown key (ignored), left out and
reported by `check`; in a number field (Moltis keeps inf, JSON has none) or an array
(Moltis keeps a null, the ledger has none), refused with the path and the fix. A JSON
file with NaN or Infinity is refused, as serde_json refuses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.cli import cli
from ledger.errors import ConfigValidationError, ParseError
from ledger.files.read_notes import ReadNotes
from ledger.stores.file_store import FileConfigStore, read_config_file
from tests.conftest import run

TOML = """\
mystery = nan

[server]
port = 13131

[channels.telegram.bot1]
token_name = "main"
retry_backoff = inf
limits = { burst = -inf, rate = 2.5 }
"""


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_left_out_of_free_form_values_and_unknown_keys(tmp_path: Path) -> None:
    notes = ReadNotes()
    doc = read_config_file(_write(tmp_path, "moltis.toml", TOML), notes)
    assert doc["channels"]["telegram"]["bot1"] == {"token_name": "main",
                                                   "limits": {"rate": 2.5}}
    assert "mystery" not in doc and doc["server"] == {"port": 13131}
    assert sorted(notes.non_finite) == [
        ("channels", "telegram", "bot1", "limits", "burst"),
        ("channels", "telegram", "bot1", "retry_backoff"), ("mystery",)]


def test_yaml_spells_them_its_own_way(tmp_path: Path) -> None:
    doc = read_config_file(_write(tmp_path, "moltis.yaml", "channels:\n  telegram:\n"
                                  "    bot1:\n      a: .inf\n      b: .NaN\n      c: 1\n"))
    assert doc["channels"]["telegram"]["bot1"] == {"c": 1}


@pytest.mark.parametrize(("text", "message"), [
    ("[chat.compaction]\nthreshold_percent = inf\n",
     "chat.compaction.threshold_percent: inf: the ledger stores values as JSON"),
    ("[channels.telegram.bot1]\nweights = [1.0, nan]\n",
     "channels.telegram.bot1.weights.1: nan in an array, which Moltis reads as null"),
])
def test_refused_where_moltis_keeps_them(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message.replace(".", r"\.")) as err:
        read_config_file(_write(tmp_path, "moltis.toml", text))
    assert "finite number" in str(err.value)


def test_a_json_file_with_infinity_is_refused_as_moltis_refuses_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "moltis.json", '{"channels": {"telegram": {"b": {"x": Infinity}}}}')
    with pytest.raises(ConfigValidationError,
                       match=r"moltis\.json: channels\.telegram\.b\.x: nan and inf"):
        read_config_file(path)


def test_check_reports_them_and_migrate_imports_the_rest(tmp_path: Path) -> None:
    config = tmp_path / "config"
    path = _write(config, "moltis.toml", TOML)
    env = {"MOLTIS_CONFIG_DIR": str(config), "MOLTIS_DATA_DIR": str(tmp_path / "data"),
           "MOLTIS_LEDGER_KEY_FILE": str(tmp_path / "ledger.key")}
    runner = CliRunner()
    got = runner.invoke(cli, ["--json", "check", "--file", str(path)], env=env)
    report = json.loads(got.stdout)
    found = {p["path"]: p["severity"] for p in report["problems"] if p["kind"] == "non-finite"}
    assert found == {"mystery": "warning", "channels.telegram.bot1.retry_backoff": "warning",
                     "channels.telegram.bot1.limits.burst": "warning"}, report
    done = runner.invoke(cli, ["migrate"], env=env)
    assert done.exit_code == 0, done.output
    got = runner.invoke(cli, ["--json", "get", "channels.telegram.bot1"], env=env)
    assert json.loads(got.stdout)["value"] == {"token_name": "main", "limits": {"rate": 2.5}}


def test_the_file_store_serves_the_rest_and_keeps_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "moltis.toml", TOML)
    store = FileConfigStore(path)
    assert run(store.load_raw()).server.port == 13131
    run(store.update_raw(lambda c: setattr(c.server, "port", 8080)))
    assert "retry_backoff = inf" in path.read_text()  # the file keeps what Moltis reads
    assert read_config_file(path)["server"]["port"] == 8080
