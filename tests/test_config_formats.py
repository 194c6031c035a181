"""moltis.yaml / moltis.yml / moltis.json: read by the one config-file reader, written back
in their own format (YAML comments kept), found in Moltis's order; and Moltis's
encrypted key vault next to them is reported, never silently ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.cli import cli
from ledger.errors import ParseError
from ledger.files.read_notes import MAX_YAML_NODES
from ledger.stores.file_store import FileConfigStore, discover_config_file, read_config_file
from tests.conftest import run

YAML = """\
# my gateway
server:
  port: 13131   # behind the proxy
  bind: "0.0.0.0"
tools:
  exec:
    sandbox:
      network: ""
providers:
  openai:
    models: ["openai::gpt-5.2"]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["moltis.yaml", "moltis.yml"])
def test_yaml_config_loads_and_writes_keep_comments_and_format(tmp_path: Path,
                                                                name: str) -> None:
    path = write(tmp_path / name, YAML)
    store = FileConfigStore(config_dir=tmp_path)
    assert store.path == path
    cfg = run(store.load_raw())
    assert (cfg.server.port, cfg.server.bind) == (13131, "0.0.0.0")
    run(store.update_raw(lambda c: setattr(c.server, "port", 8080)))
    text = path.read_text()
    assert "# my gateway" in text
    port_line = next(line for line in text.splitlines() if "port:" in line)
    assert port_line.split() == ["port:", "8080", "#", "behind", "the", "proxy"]
    assert 'models: ["openai::gpt-5.2"]' in text  # untouched lines keep their style
    assert read_config_file(path)["server"] == {"port": 8080, "bind": "0.0.0.0"}
    run(store.update_raw(lambda c: setattr(c.tools, "agent_timeout_secs", 900)))
    assert read_config_file(path)["tools"]["agent_timeout_secs"] == 900
    assert "# my gateway" in path.read_text()


def test_json_config_stays_json(tmp_path: Path) -> None:
    path = write(tmp_path / "moltis.json", json.dumps({"server": {"port": 1}}))
    store = FileConfigStore(config_dir=tmp_path)
    run(store.update_raw(lambda c: setattr(c.server, "port", 2)))
    assert json.loads(path.read_text()) == {"server": {"port": 2}}


def test_discovery_order_is_moltis_order(tmp_path: Path) -> None:
    write(tmp_path / "moltis.json", "{}")
    assert discover_config_file(tmp_path).name == "moltis.json"
    write(tmp_path / "moltis.yml", "{}")
    assert discover_config_file(tmp_path).name == "moltis.yml"
    write(tmp_path / "moltis.yaml", "{}")
    assert discover_config_file(tmp_path).name == "moltis.yaml"
    write(tmp_path / "moltis.toml", "")
    assert discover_config_file(tmp_path).name == "moltis.toml"


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "moltis.yaml", "server:\n  port: [1\n")
    with pytest.raises(ParseError, match=r"moltis\.yaml: invalid YAML at line \d+"):
        read_config_file(path)
    path = write(tmp_path / "moltis.yaml", "- a\n- b\n")
    with pytest.raises(ParseError, match="must be a YAML object"):
        read_config_file(path)


def test_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    path = write(tmp_path / "moltis.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ParseError, match=f"more than {MAX_YAML_NODES:,} values"):
        read_config_file(path)


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_migrate_and_check_read_yaml(tmp_path: Path) -> None:
    config = tmp_path / "config"
    write(config / "moltis.yaml", YAML)
    code, out, err = _cli("--json", "migrate")
    assert code == 0, err
    assert json.loads(out)["sources"]["config"].endswith("moltis.yaml")
    code, out, _ = _cli("get", "server.port")
    assert (code, out) == (0, "13131\n")
    code, out, _ = _cli("--json", "check", "--file", str(config / "moltis.yaml"))
    assert code == 0
    assert json.loads(out)["ok"] is True


def test_encrypted_vault_alone_is_reported_by_migrate_and_check(tmp_path: Path) -> None:
    config = tmp_path / "config"
    write(config / "moltis.toml", "[server]\nport = 1\n")
    write(config / "provider_keys.json.enc", "AQIDBA==")
    code, out, err = _cli("migrate")
    assert code == 0
    assert "provider_keys.json.enc" in err
    assert "no plaintext provider_keys.json" in err
    code, out, err = _cli("--json", "migrate")
    doc = json.loads(out)
    assert any("provider_keys.json.enc" in n for n in doc["notices"])
    code, out, err = _cli("check")
    assert "provider_keys.json.enc" in err
    code, out, _ = _cli("--json", "check")
    assert any("provider_keys.json.enc" in n for n in json.loads(out)["notices"])


def test_encrypted_vault_beside_the_plain_file_is_named_too(tmp_path: Path) -> None:
    config = tmp_path / "config"
    write(config / "moltis.toml", "[server]\nport = 1\n")
    write(config / "provider_keys.json", json.dumps({"openai": {"apiKey": "sk-1"}}))
    write(config / "provider_keys.json.enc", "AQIDBA==")
    code, out, err = _cli("migrate")
    assert code == 0
    assert "provider_keys.json.enc" in err
    assert "keys:openai.apiKey" in out
