"""Operator input on the command line (issue 15): typos refused with the nearest known
keys, "unknown key" distinct from "not set", one path grammar (`keys:` paths too) for
every command that takes a path, negative numbers as values, `--json` errors as one
JSON object, `--at` help naming its time words, warnings printed once, `check --file`
reporting every problem. In-process with click's CliRunner."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ledger.cli.app import run

TOML = """\
[server]
port = 13131
mystery_setting = "kept"

[providers.openai]
enabled = true
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "moltis.toml").write_text(TOML, encoding="utf-8")
    (config / "provider_keys.json").write_text(
        json.dumps({"openai": {"apiKey": "sk-test-1"}}), encoding="utf-8")
    assert call("migrate").exit_code == 0
    return config


def call(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """`moltis-ledger ARGS` in-process through `run()` (which prints errors, as the console
    script does), with click's test isolation of stdin/stdout/stderr and environment."""
    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (out, err, _):
        code = run(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue(), err.getvalue()
    return Result(runner, stdout, stderr, stdout + stderr, None, code, None)


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def head(site: Path) -> int:
    return int(as_json(call("--json", "log", "--limit", "1"))["head_seq"])


# -- typos ---------------------------------------------------------------------------


def test_set_of_an_unknown_key_is_refused_with_suggestions(site: Path) -> None:
    before = head(site)
    result = call("set", "server.prot", "8080")
    assert result.exit_code == 1
    assert "unknown key" in result.stderr
    assert "server.port" in result.stderr
    assert "--allow-unknown" in result.stderr
    assert head(site) == before
    stored = call("set", "server.prot", "8080", "--allow-unknown")
    assert stored.exit_code == 0, stored.stderr
    assert head(site) == before + 1
    assert stored.stderr.count("server.prot") == 1  # one warning line


def test_get_unknown_key_vs_not_set(site: Path) -> None:
    unknown = call("get", "server.prot")
    assert unknown.exit_code == 1
    assert "unknown key" in unknown.stderr
    assert "server.port" in unknown.stderr
    not_set = call("get", "server.bind")
    assert not_set.exit_code == 1
    assert "not set" in not_set.stderr
    assert "unknown key" not in not_set.stderr


def test_imported_unknown_keys_stay_readable_and_removable(site: Path) -> None:
    # (not named like a secret: a `*_key` unknown key would be sealed and show as a mask)
    got = call("get", "server.mystery_setting")
    assert (got.exit_code, got.stdout) == (0, "kept\n")
    removed = call("unset", "server.mystery_setting")
    assert removed.exit_code == 0, removed.stderr
    assert "unset server.mystery_setting" in removed.stdout
    again = call("unset", "server.mystery_setting")
    assert again.exit_code == 1
    assert "unknown key" in again.stderr


def test_unset_of_a_known_key_not_set_is_not_an_unknown_key(site: Path) -> None:
    result = call("unset", "server.bind")
    assert result.exit_code == 0
    assert "was not set" in result.stdout


def test_unknown_provider_names_warn_with_suggestions(site: Path) -> None:
    result = call("providers", "set", "gemni", "--api-key", "k-1")
    assert result.exit_code == 0, result.stderr
    assert "unknown provider" in result.stderr
    assert "gemini" in result.stderr
    quiet = call("providers", "set", "custom-mine", "--api-key", "k-2")
    assert "unknown provider" not in quiet.stderr
    in_config = call("set", "providers.antropic.enabled", "true")
    assert in_config.exit_code == 0, in_config.stderr
    assert "unknown provider" in in_config.stderr
    assert "anthropic" in in_config.stderr
    assert "unknown provider" not in call("set", "providers.openai.enabled", "false").stderr


def test_check_suggests_the_nearest_keys(site: Path) -> None:
    call("set", "server.prot", "1", "--allow-unknown")
    doc = as_json(call("--json", "check"))
    found = {p["path"]: p for p in doc["problems"]}
    assert found["server.prot"]["suggestions"] == ["server.port"]
    assert found["server.prot"]["severity"] == "warning"


# -- one path grammar ----------------------------------------------------------------


def test_keys_paths_work_in_every_command_that_takes_a_path(site: Path) -> None:
    got = call("get", "keys:openai.apiKey")
    assert got.exit_code == 0, got.stderr
    assert got.stdout.startswith("<secret fp:")
    assert "sk-test-1" not in got.stdout
    assert call("set", "keys:openai.baseUrl", "http://127.0.0.1:9/v1").exit_code == 0
    assert call("get", "keys:openai.baseUrl").stdout == "http://127.0.0.1:9/v1\n"
    assert call("providers", "set", "gemni", "--api-key", "k-1").exit_code == 0
    unset = call("unset", "keys:gemni")
    assert unset.exit_code == 0, unset.stderr
    assert call("get", "keys:gemni").exit_code == 1
    blame = as_json(call("--json", "blame", "keys:openai"))
    assert {e["path"] for e in blame["entries"]} == {"openai.apiKey", "openai.baseUrl"}
    log = as_json(call("--json", "log", "--path", "keys:openai.baseUrl"))
    assert len(log["events"]) == 1
    diff = as_json(call("--json", "diff", "1", "--path", "keys:openai"))
    assert [(c["doc"], c["path"]) for c in diff["changes"]] == [("keys", "openai.baseUrl")]
    config_only = as_json(call("--json", "diff", "1", "--path", "server"))
    assert all(c["doc"] == "config" for c in config_only["changes"])


def test_a_bad_keys_path_names_the_grammar(site: Path) -> None:
    result = call("get", "keys:")
    assert result.exit_code == 1
    assert "keys:openai" in result.stderr


# -- values, errors, help, warnings --------------------------------------------------


def test_negative_numbers_are_values(site: Path) -> None:
    result = call("set", "server.port", "-1")
    assert result.exit_code == 1
    assert "No such option" not in result.stderr
    assert "server.port" in result.stderr
    ok = call("set", "tools.exec.sandbox.resource_limits.cpu_quota", "-1.5")
    assert "No such option" not in ok.stderr


@pytest.mark.parametrize("args", [
    ("--json", "get", "server.prot"),
    ("get", "server.prot", "--json"),
    ("--json", "set", "server.port", "abc"),
])
def test_json_errors_are_one_object_on_stdout(site: Path, capsys: pytest.CaptureFixture[str],
                                              args: tuple[str, ...]) -> None:
    code = run(list(args))
    captured = capsys.readouterr()
    assert code == 1
    doc = json.loads(captured.out)
    assert set(doc) >= {"error", "code", "hint"}
    assert doc["error"]
    assert doc["exit_code"] == 1
    assert "error:" not in captured.err  # the error is printed once, as JSON


def test_json_usage_errors_keep_exit_2(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["--json", "set", "server.port"])
    captured = capsys.readouterr()
    assert code == 2
    doc = json.loads(captured.out)
    assert doc["code"] == "usage"
    assert "set" in doc["hint"]


def test_json_unknown_key_error_names_suggestions(site: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--json", "set", "server.prot", "1"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["code"] == "unknown-key"
    assert "server.port" in doc["error"]
    assert "--allow-unknown" in doc["hint"]


@pytest.mark.parametrize("command", [("get",), ("show",), ("blame",), ("export",),
                                     ("log",), ("rollback",), ("shred",),
                                     ("providers", "list")])
def test_ref_help_lists_the_time_words(command: tuple[str, ...]) -> None:
    text = " ".join(call(*command, "--help").stdout.split())  # (help text is wrapped)
    for word in ("yesterday", "today", "ago", "last tuesday", "ISO-8601"):
        assert word in text, (command, word)


def test_warning_lines_print_once(site: Path) -> None:
    result = call("get", "server.port", "--effective", env={"MOLTIS_SERVER__PORT": "abc"})
    assert result.exit_code == 0
    assert result.stdout.startswith("13131")
    assert result.stderr.count("MOLTIS_SERVER__PORT") == 1, result.stderr


def test_check_file_reports_every_invalid_value_and_placeholders(tmp_path: Path) -> None:
    path = tmp_path / "moltis.toml"
    path.write_text('[server]\nport = "abc"\n[tools]\nagent_timeout_secs = -1\n'
                    '[providers.openai]\napi_key = "<secret fp:0123456789abcdef>"\n',
                    encoding="utf-8")
    result = call("--json", "check", "--file", str(path))
    assert result.exit_code == 1
    problems = {(p["kind"], p["path"]) for p in as_json(result)["problems"]}
    assert problems == {("invalid-value", "server.port"),
                        ("invalid-value", "tools.agent_timeout_secs"),
                        ("masked-secret", "providers.openai.api_key")}
