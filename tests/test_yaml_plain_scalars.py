"""An unquoted YAML number or bool where Moltis's field takes text is that text, as
serde_yaml 0.9 reads it (`deserialize_str` hands any scalar's text to a string field or
map key: review r13), everywhere the config file is read: `check --file`, `migrate`,
the file store. Elsewhere (a number field, a free-form value, an unknown key) it stays a
number, as serde_json's `Value` keeps it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.cli import cli
from ledger.errors import ParseError
from ledger.files.read_notes import ReadNotes
from ledger.files.serde_scalars import serde_plain
from ledger.stores.file_store import FileConfigStore, read_config_file
from tests.conftest import run

YAML = """\
server:
  port: 13131
identity:
  name: 1000
  theme: 0x1F
  emoji: true
tools:
  exec:
    allowlist: [1, ls, 2.50]
providers:
  openai:
    api_key: 123456789
channels:
  telegram:
    bot1:
      retry_backoff: 1.5
mystery: 12
"""


def _write(tmp_path: Path, text: str = YAML) -> Path:
    path = tmp_path / "moltis.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_field_that_takes_text_gets_the_scalars_text(tmp_path: Path) -> None:
    doc = read_config_file(_write(tmp_path))
    assert doc["identity"] == {"name": "1000", "theme": "0x1F", "emoji": "true"}
    assert doc["tools"]["exec"]["allowlist"] == ["1", "ls", "2.50"]
    assert doc["providers"]["openai"]["api_key"] == "123456789"  # a secret is text too
    assert doc["server"]["port"] == 13131  # a number field keeps the number
    assert doc["channels"]["telegram"]["bot1"]["retry_backoff"] == 1.5  # free-form
    assert doc["mystery"] == 12  # unknown: Moltis ignores it, the ledger keeps it as read


def test_an_alias_is_read_for_each_place_it_is_used(tmp_path: Path) -> None:
    """One anchor used as a port and as a name: the port is the number, the name the
    text (the document is a copy per use, not one shared value)."""
    doc = read_config_file(_write(tmp_path, "base: &n 8080\nserver:\n  port: *n\n"
                                            "identity:\n  name: *n\n"))
    assert (doc["server"]["port"], doc["identity"]["name"]) == (8080, "8080")


def test_a_map_key_is_text_and_a_key_given_twice_keeps_the_last(tmp_path: Path) -> None:
    """serde keeps a map's last entry for a key given twice (`1:` and `"1":` are one key,
    "1"), and refuses a section's field given twice ("duplicate field"); a key a section
    does not know is skipped by serde, so the last one is kept too."""
    doc = read_config_file(_write(tmp_path, "mcp:\n  servers:\n    1:\n      command: uvx\n"))
    assert list(doc["mcp"]["servers"]) == ["1"]
    notes = ReadNotes()
    doc = read_config_file(_write(tmp_path, "mcp:\n  servers:\n    1:\n      command: a\n"
                                            '    "1":\n      command: b\n'
                                            "mystery: 1\nmystery: 2\n"), notes)
    assert doc["mcp"]["servers"] == {"1": {"command": "b"}} and doc["mystery"] == 2
    assert sorted(notes.given_twice) == [("mcp", "servers", "1"), ("mystery",)]
    with pytest.raises(ParseError, match='server: duplicate field "port"'):
        read_config_file(_write(tmp_path, "server:\n  port: 1\n  port: 2\n"))


def test_check_warns_without_showing_the_value_and_migrate_imports_it(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    path = _write(config)
    env = {"MOLTIS_CONFIG_DIR": str(config), "MOLTIS_DATA_DIR": str(tmp_path / "data"),
           "MOLTIS_LEDGER_KEY_FILE": str(tmp_path / "ledger.key")}
    runner = CliRunner()
    got = runner.invoke(cli, ["--json", "check", "--file", str(path)], env=env)
    report = json.loads(got.stdout)
    texts = {p["path"]: p for p in report["problems"] if p["kind"] == "unquoted-text"}
    assert set(texts) == {"identity.name", "identity.theme", "identity.emoji",
                          "tools.exec.allowlist.0", "tools.exec.allowlist.2",
                          "providers.openai.api_key"}, report
    # a provider entry is read whole first (serde flatten), which keeps the number:
    # Moltis refuses it (review r21); the ledger keeps the text, as elsewhere
    assert {k: p["severity"] for k, p in texts.items() if p["severity"] == "error"} == {
        "providers.openai.api_key": "error"}
    assert "123456789" not in got.stdout  # a secret's text is not shown
    done = runner.invoke(cli, ["migrate"], env=env)
    assert done.exit_code == 0, done.output
    got = runner.invoke(cli, ["--json", "get", "identity.theme"], env=env)
    assert json.loads(got.stdout)["value"] == "0x1F"


def test_the_file_store_reads_and_keeps_the_text(tmp_path: Path) -> None:
    path = _write(tmp_path)
    store = FileConfigStore(path)
    cfg = run(store.load_raw())
    assert (cfg.identity.name, cfg.identity.theme) == ("1000", "0x1F")
    run(store.update_raw(lambda c: setattr(c.server, "port", 8080)))
    text = path.read_text()
    assert "theme: 0x1F" in text  # an untouched line keeps its style
    assert run(FileConfigStore(path).load_raw()).identity.name == "1000"


@pytest.mark.parametrize(("text", "value"), [
    ("0x1F", 31), ("-0x1F", -31), ("+0x1F", 31), ("0x+1", "0x+1"), ("0o17", 15),
    ("0b101", 5), ("0", 0), ("-7", -7), ("+7", 7), ("++7", "++7"),
    ("0042", "0042"), ("-0042", "-0042"), ("08", "08"), ("1_000", "1_000"),
    ("1e3", 1000.0), ("1.", 1.0), (".5", 0.5), ("00.5", 0.5), ("1e400", "1e400"),
    (".inf", math.inf), ("+.inf", math.inf), ("-.Inf", -math.inf), ("inf", "inf"),
    ("nan", "nan"), ("True", True), ("FALSE", False), ("yes", "yes"), ("~", None),
    ("Null", None), ("", None), ("2024-01-01 10:00:00", "2024-01-01 10:00:00"),
])
def test_a_plain_scalar_is_what_serde_yaml_makes_of_it(text: str, value: object) -> None:
    """serde_yaml 0.9.34 `visit_untagged_scalar`, not YAML 1.2's resolver (review r21:
    a leading-zero number, `1_000` and `1e400` are text to Moltis)."""
    got = serde_plain(text)
    assert type(got) is type(value) and got == value


def test_nan_is_a_float() -> None:
    assert math.isnan(serde_plain(".NaN"))


def test_the_file_store_edits_a_file_with_a_key_given_twice(tmp_path: Path) -> None:
    """The reader keeps a map's last entry, as serde does; the editor did not, and its
    refusal quoted both values (two tokens) in the error. It now keeps the last entry,
    which is what Moltis read, and writes the file without the other."""
    path = _write(tmp_path, "server:\n  port: 1\nmcp:\n  servers:\n    a:\n      env:\n"
                            "        TOKEN: sk-OLD-r24\n        TOKEN: sk-NEW-r24\n")
    store = FileConfigStore(path)
    run(store.update_raw(lambda c: setattr(c.server, "port", 2)))
    text = path.read_text()
    assert "sk-OLD-r24" not in text and "TOKEN: sk-NEW-r24" in text
    env = run(FileConfigStore(path).load_raw()).mcp.servers["a"].env
    assert (env["TOKEN"].reveal(), run(FileConfigStore(path).load_raw()).server.port) == (
        "sk-NEW-r24", 2)


def test_a_refusal_names_a_key_without_forging_a_line(tmp_path: Path) -> None:
    """The reread: a key holding a newline was put in the refusal as it is, so the
    message showed a second, forged `error:` line; keys that are not bare are quoted."""
    path = _write(tmp_path, 'providers:\n  "p\\nerror: forged":\n    api_key: a\n'
                            "    api_key: b\n")
    with pytest.raises(ParseError) as err:
        read_config_file(path)
    assert "\n" not in str(err.value) and '"p\\nerror: forged"' in str(err.value)
